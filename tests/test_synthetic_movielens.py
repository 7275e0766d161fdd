"""The synthetic MovieLens generator against the published statistics of the real ML-100K, its determinism,
its files in both formats, and the statistics themselves on hand-made data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastadapt.recsys import (
    PUBLISHED_ML100K,
    STATES,
    STATISTICS,
    MovieLens,
    cold_start_split,
    describe_statistics,
    gini,
    load_movielens,
    movielens_statistics,
    write_synthetic_movielens,
)

_FILES = {"ml-100k": ("u.data", "u.user", "u.item"), "ml-1m": ("ratings.dat", "users.dat", "movies.dat")}


@pytest.fixture(scope="module", params=["ml-100k", "ml-1m"])
def default(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MovieLens:
    """The default size (800 users x 1,000 items), as ``recsys.source=synthetic`` uses it."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_movielens(root, request.param, seed=0)
    return load_movielens(request.param, root)


def _published(key: str) -> float:
    value = PUBLISHED_ML100K[key]
    assert value is not None
    return value


def test_statistics_are_close_to_ml100k(default: MovieLens) -> None:
    stats = movielens_statistics(default)
    for k in range(1, 6):  # quantised at ML-100K's quantiles: equal by construction
        assert abs(stats[f"rating_{k}"] - _published(f"rating_{k}")) < 0.015, k
    assert abs(stats["mean"] - _published("mean")) < 0.05
    assert abs(stats["sd"] - _published("sd")) < 0.05
    assert abs(stats["density"] - _published("density")) < 0.01
    assert abs(stats["user_mean_sd"] - _published("user_mean_sd")) < 0.08
    assert 0.55 < stats["item_gini"] < 0.70  # ML-100K: 0.629
    assert 0.03 < stats["items_with_1_rating"] < 0.15  # ML-100K: 0.084
    assert stats["median_item_ratings"] < 0.6 * default.n_ratings / default.n_items  # median well below the mean
    # Users: at least 20 ratings each (as ML-100K), at most half the items, long-tailed.
    assert stats["min_user_ratings"] >= 20 and stats["max_user_ratings"] <= default.n_items // 2
    assert stats["median_user_ratings"] < 0.8 * stats["mean_user_ratings"]  # ML-100K: 65 / 106
    assert (stats["n_users"], stats["n_items"]) == (800, 1000)  # every item rated, as in ML-100K
    # The user features say little about a user's mean rating.
    assert stats["feature_r2"] < 0.15 and stats["feature_r2_adjusted"] < 0.1


def test_features_matter_only_as_much_as_asked(tmp_path: Path) -> None:
    write_synthetic_movielens(tmp_path / "none", "ml-1m", feature_share=0.0, seed=2)
    write_synthetic_movielens(tmp_path / "all", "ml-1m", feature_share=1.0, seed=2)
    none = movielens_statistics(load_movielens("ml-1m", tmp_path / "none"))
    strong = movielens_statistics(load_movielens("ml-1m", tmp_path / "all"))
    assert none["feature_r2_adjusted"] < 0.03 < 0.4 < strong["feature_r2_adjusted"]


def test_every_cold_start_state_has_tasks(default: MovieLens) -> None:
    summary = cold_start_split(default).summary()
    for state in STATES:
        assert summary[state]["tasks"] >= 20, state


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m"])
def test_deterministic_per_seed(tmp_path: Path, fmt: str) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_synthetic_movielens(tmp_path / name, fmt, n_users=60, n_items=200, seed=seed)  # type: ignore[arg-type]
    for file in _FILES[fmt]:
        assert (tmp_path / "a" / fmt / file).read_bytes() == (tmp_path / "b" / fmt / file).read_bytes(), file
    assert (tmp_path / "a" / fmt / _FILES[fmt][0]).read_bytes() != (tmp_path / "c" / fmt / _FILES[fmt][0]).read_bytes()


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m"])
def test_files_load_at_ml100k_size(tmp_path: Path, fmt: str) -> None:
    write_synthetic_movielens(tmp_path, fmt, n_users=943, n_items=1682, seed=1)  # type: ignore[arg-type]
    data = load_movielens(fmt, tmp_path)  # type: ignore[arg-type]
    stats = movielens_statistics(data)
    assert (data.n_users, data.n_items) == (943, 1682)
    assert abs(stats["n_ratings"] - 100_000) < 500
    assert abs(stats["median_user_ratings"] - 65) < 15 and abs(stats["median_item_ratings"] - 27) < 8
    assert 400 < stats["max_item_ratings"] < 800  # ML-100K: 583
    assert abs(stats["user_mean_sd"] - 0.45) < 0.05
    # A user's timestamps strictly increase; no pair is rated twice.
    order = np.lexsort((data.timestamp, data.user))
    same_user = data.user[order][1:] == data.user[order][:-1]
    assert (np.diff(data.timestamp[order])[same_user] > 0).all()
    assert len(np.unique(data.user * data.n_items + data.item)) == data.n_ratings


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="density must be in"):
        write_synthetic_movielens(tmp_path, density=0.0)
    with pytest.raises(ValueError, match="the shares in"):
        write_synthetic_movielens(tmp_path, feature_share=1.5)


def test_gini() -> None:
    assert gini([3, 3, 3, 3]) == 0.0
    assert gini([0, 0, 0, 8]) == pytest.approx(0.75)  # (n - 1) / n when one holds everything
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)  # sum |x_i - x_j| / (2 n^2 mean) = 20 / 80


def test_statistics_on_hand_made_data() -> None:
    # Users 0-3, items 0-2; user 3 rates nothing, item 2 is not rated.
    user, item = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 0, 1])
    rating = np.array([5, 3, 4, 2, 1, 1], dtype=np.float32)
    n_users, n_items = 4, 3
    data = MovieLens(
        name="ml-100k",
        user=user,
        item=item,
        rating=rating,
        timestamp=np.arange(6),
        user_ids=np.arange(1, n_users + 1),
        gender=np.array([0, 1, 0, 1]),
        age=np.array([1, 1, 1, 1]),
        occupation=np.array([3, 3, 3, 3]),
        zip_prefix=np.zeros(n_users, dtype=np.int64),
        item_ids=np.arange(1, n_items + 1),
        titles=["a", "b", "c"],
        year=np.full(n_items, 1995),
        genres=np.ones((n_items, 19), dtype=np.float32),
        genre_names=tuple(f"g{g}" for g in range(19)),
    )
    stats = movielens_statistics(data)
    assert list(stats) == list(STATISTICS)
    assert (stats["n_users"], stats["n_items"], stats["n_ratings"]) == (3, 2, 6)
    assert stats["density"] == 1.0
    assert [stats[f"rating_{k}"] for k in range(1, 6)] == pytest.approx([2 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 6])
    assert stats["mean"] == pytest.approx(16 / 6) and stats["sd"] == pytest.approx(np.std(rating))
    means = np.array([4.0, 3.0, 1.0])
    assert stats["user_mean_sd"] == pytest.approx(means.std())
    assert stats["median_user_ratings"] == 2 and stats["max_item_ratings"] == 3 and stats["item_gini"] == 0.0
    # Gender alone separates users 0 and 2 (M) from 1 (F): R2 = 1 - SS within M / SS total.
    within = np.sum((means[[0, 2]] - means[[0, 2]].mean()) ** 2)
    assert stats["feature_r2"] == pytest.approx(1 - within / np.sum((means - means.mean()) ** 2))


def test_description_is_a_side_by_side_table(default: MovieLens) -> None:
    table = describe_statistics(movielens_statistics(default), names=("synthetic", "ML-100K"))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["statistic", "synthetic", "ML-100K"]
    assert len(lines) == 1 + len(STATISTICS)
    gini_row = next(line for line in lines if line.startswith("item_gini"))
    assert "0.6290" in gini_row and "Gini" in gini_row
    assert next(line for line in lines if line.startswith("feature_r2 ")).split()[2] == "-"  # not published
    assert "ML-100K" not in describe_statistics(movielens_statistics(default), reference=None)
