"""MeLU's cold-start protocol: disjoint users, the right items in every state, warm queries held out of
training, task sizes, time order, support caps, determinism and the error messages."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from fastadapt.recsys import (
    STATES,
    ColdStartSplit,
    MovieLens,
    UserTask,
    cold_start_split,
    load_movielens,
    new_item_year_threshold,
    write_synthetic_movielens,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> MovieLens:
    root = tmp_path_factory.mktemp("ml")
    write_synthetic_movielens(root, "ml-1m", n_users=200, n_items=300, seed=1)
    return load_movielens("ml-1m", root)


@pytest.fixture(scope="module")
def split(data: MovieLens) -> ColdStartSplit:
    return cold_start_split(data, seed=0)


def _pairs(tasks: list[UserTask], part: str = "both") -> set[tuple[int, int]]:
    out = set()
    for t in tasks:
        items = {"support": [t.support_items], "query": [t.query_items]}.get(part, [t.support_items, t.query_items])
        out |= {(t.user, int(i)) for group in items for i in group}
    return out


def test_every_state_has_tasks(split: ColdStartSplit) -> None:
    summary = split.summary()
    assert list(summary) == list(STATES)
    for state in STATES:
        assert summary[state]["tasks"] == len(split.state(state)) > 0
        assert summary[state]["query"] == 10 * summary[state]["tasks"]


def test_users_are_partitioned(data: MovieLens, split: ColdStartSplit) -> None:
    existing, new = set(split.existing_users.tolist()), set(split.new_users.tolist())
    val = set(split.val_users.tolist())
    assert not existing & new and not existing & val and not new & val
    assert existing | new | val == set(range(data.n_users))
    assert len(new) == 40 and len(val) == 20  # 20% and 10% of 200
    assert set(split.warm_users.tolist()) <= existing
    for state in ("train", "warm", "item_cold"):
        assert {t.user for t in split.tasks[state]} <= existing
    for state in ("user_cold", "user_item_cold"):
        assert {t.user for t in split.tasks[state]} <= new
    assert {t.user for t in split.tasks["val"]} <= val


def test_validation_users_are_disjoint_from_every_other_state(data: MovieLens, split: ColdStartSplit) -> None:
    """Selection never sees a reported (or trained) rating: the validation users' ratings are in no other state,
    their tasks are of existing items only, and the new users do not depend on the validation fraction."""
    val_users = {t.user for t in split.tasks["val"]}
    assert val_users
    for state in STATES:
        if state != "val":
            assert not val_users & {t.user for t in split.tasks[state]}, state
    items = np.concatenate([np.concatenate([t.support_items, t.query_items]) for t in split.tasks["val"]])
    assert not split.new_items[items].any()
    without = cold_start_split(data, seed=0, val_user_fraction=0.0)
    np.testing.assert_array_equal(without.new_users, split.new_users)
    assert not without.tasks["val"] and len(without.existing_users) == len(split.existing_users) + 20
    with pytest.raises(ValueError, match="val_user_fraction must be in"):
        cold_start_split(data, new_user_fraction=0.5, val_user_fraction=0.5)


def test_items_follow_the_year_threshold(data: MovieLens, split: ColdStartSplit) -> None:
    assert split.year_threshold == 1998  # MeLU's for ML-1M
    np.testing.assert_array_equal(split.new_items, data.year >= 1998)
    for state in STATES:
        items = np.array([i for _, i in _pairs(split.tasks[state])])
        expected_new = state in ("item_cold", "user_item_cold")
        assert (split.new_items[items] == expected_new).all(), state


def test_warm_queries_never_reach_training(data: MovieLens, split: ColdStartSplit) -> None:
    train, warm = split.tasks["train"], split.tasks["warm"]
    assert len(warm) == round(0.1 * len(_eligible(data, split, False, split.existing_users)))
    assert not _pairs(warm, "query") & _pairs(train)
    # The rest of a warm user's ratings is their train task (that is what warm means).
    train_by_user = {t.user: t for t in train}
    shared = [t for t in warm if t.user in train_by_user]
    assert shared
    for t in shared:
        assert _pairs([t], "support") == _pairs([train_by_user[t.user]])


def _cell_ratings(data: MovieLens, split: ColdStartSplit, user: int, new_items: bool) -> dict[int, float]:
    mask = (data.user == user) & (split.new_items[data.item] == new_items)
    return dict(zip(data.item[mask].tolist(), data.rating[mask].tolist(), strict=True))


def _counts(data: MovieLens, split: ColdStartSplit) -> Counter[tuple[int, bool]]:
    """Ratings per (user, item is new)."""
    return Counter(zip(data.user.tolist(), split.new_items[data.item].tolist(), strict=True))


def _eligible(data: MovieLens, split: ColdStartSplit, new_items: bool, users: np.ndarray) -> set[int]:
    counts = _counts(data, split)
    return {u for u in users.tolist() if split.min_ratings <= counts[(u, new_items)] <= split.max_ratings}


@pytest.mark.parametrize(("min_ratings", "max_ratings"), [(13, 100), (20, 40)])
def test_tasks_hold_the_users_ratings_within_bounds(data: MovieLens, min_ratings: int, max_ratings: int) -> None:
    split = cold_start_split(data, min_ratings=min_ratings, max_ratings=max_ratings, seed=0)
    warm_users = set(split.warm_users.tolist())
    for state, users, new_items in (
        ("train", split.existing_users, False),
        ("user_cold", split.new_users, False),
        ("item_cold", split.existing_users, True),
        ("user_item_cold", split.new_users, True),
    ):
        tasks = split.tasks[state]
        assert [t.user for t in tasks] == sorted(t.user for t in tasks)
        expected = _eligible(data, split, new_items, users)
        if state == "train":  # warm users take part with their ratings minus the warm queries
            expected = (expected - warm_users) | {
                u for u in warm_users if min_ratings <= _counts(data, split)[(u, False)] - 10 <= max_ratings
            }
        assert {t.user for t in tasks} == expected, state
        for t in tasks:
            ratings = _cell_ratings(data, split, t.user, new_items)
            n = len(ratings) - (10 if state == "train" and t.user in warm_users else 0)
            assert len(t.query_items) == len(t.query_ratings) == 10
            assert len(t.support_items) + 10 == n and min_ratings <= n <= max_ratings
            items = np.concatenate([t.support_items, t.query_items])
            assert len(np.unique(items)) == len(items)
            got = np.concatenate([t.support_ratings, t.query_ratings])
            assert got.tolist() == [ratings[i] for i in items.tolist()]
            assert t.support_items.dtype == np.int64 and t.support_ratings.dtype == np.float32


def test_time_ordered_queries_are_the_last_ratings(data: MovieLens) -> None:
    split = cold_start_split(data, time_ordered=True, seed=0)
    time = {(u, i): t for u, i, t in zip(data.user.tolist(), data.item.tolist(), data.timestamp.tolist(), strict=True)}
    for state in STATES:
        for t in split.tasks[state]:
            support = [time[(t.user, i)] for i in t.support_items.tolist()]
            query = [time[(t.user, i)] for i in t.query_items.tolist()]
            assert support == sorted(support) and max(support) < min(query), state
    # Warm: held-out queries are the user's last existing-item ratings; train keeps what came before.
    train = {t.user: t for t in split.tasks["train"]}
    for t in split.tasks["warm"]:
        if t.user in train:
            last_train = max(
                time[(t.user, i)] for i in np.concatenate([train[t.user].support_items, train[t.user].query_items])
            )
            assert last_train < min(time[(t.user, i)] for i in t.query_items.tolist())


@pytest.mark.parametrize("time_ordered", [False, True])
def test_support_cap_keeps_queries_and_nests_supports(data: MovieLens, time_ordered: bool) -> None:
    full = cold_start_split(data, time_ordered=time_ordered, seed=2)
    capped = {cap: cold_start_split(data, time_ordered=time_ordered, support_cap=cap, seed=2) for cap in (1, 3, 5)}
    for state in STATES:
        for cap, split in capped.items():
            assert len(split.tasks[state]) == len(full.tasks[state])
            for a, b in zip(split.tasks[state], full.tasks[state], strict=True):
                assert a.user == b.user
                np.testing.assert_array_equal(a.query_items, b.query_items)
                assert len(a.support_items) == min(cap, len(b.support_items))
                np.testing.assert_array_equal(a.support_items, b.support_items[:cap])  # nested: 1 in 3 in 5 in all


def test_split_is_deterministic_given_the_seed(data: MovieLens) -> None:
    a, b, c = cold_start_split(data, seed=4), cold_start_split(data, seed=4), cold_start_split(data, seed=5)
    np.testing.assert_array_equal(a.new_users, b.new_users)
    np.testing.assert_array_equal(a.warm_users, b.warm_users)
    for state in STATES:
        for x, y in zip(a.tasks[state], b.tasks[state], strict=True):
            assert x.user == y.user
            np.testing.assert_array_equal(x.query_items, y.query_items)
            np.testing.assert_array_equal(x.support_items, y.support_items)
    assert not np.array_equal(a.new_users, c.new_users)


def test_default_threshold_for_other_data(data: MovieLens) -> None:
    renamed = MovieLens(**{**data.__dict__, "name": "ml-100k"})
    year = new_item_year_threshold(renamed)
    assert (data.year >= year).mean() >= 0.1 > (data.year >= year + 1).mean()
    assert cold_start_split(renamed).year_threshold == year
    assert cold_start_split(data, year_threshold=1995).year_threshold == 1995


def test_errors(data: MovieLens, split: ColdStartSplit) -> None:
    cases = [
        (
            {"query_size": 13},
            "query_size=13 must be smaller than min_ratings=13, so that every task keeps at least one support "
            "rating; lower query_size or raise min_ratings",
        ),
        ({"support_cap": 0}, "support_cap must be >= 1 (or None for all support ratings), got 0"),
        ({"max_ratings": 12}, "max_ratings=12 is smaller than min_ratings=13"),
        ({"new_user_fraction": 1.0}, "new_user_fraction must be in (0, 1), got 1.0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            cold_start_split(data, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("unknown state 'cold'; choose one of train, val, warm, user_cold")):
        split.state("cold")
    no_new_items = cold_start_split(data, year_threshold=3000)
    assert no_new_items.summary()["item_cold"] == {"tasks": 0, "support": 0, "query": 0}
    message = (
        "state 'item_cold' has no tasks: no existing user has between 13 and 100 ratings of new items (0 of 300 "
        "items are new with year_threshold=3000); lower min_ratings, raise max_ratings, or move year_threshold"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        no_new_items.state("item_cold")
    assert len(no_new_items.state("user_cold")) > 0
