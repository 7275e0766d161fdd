"""Summary statistics of a MovieLens-style dataset, beside the published ones of the real ML-100K: what the
synthetic generator (:func:`fastadapt.recsys.write_synthetic_movielens`) is calibrated against.

The statistics are of the ratings as loaded: users and items without any rating are left out of the counts
(ML-100K has none; ML-1M lists 3,883 movies of which 3,706 are rated).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._movielens import MovieLens

#: The statistics, in the order of :func:`describe_statistics`, each with what it measures.
STATISTICS: dict[str, str] = {
    "n_users": "users with a rating",
    "n_items": "items with a rating",
    "n_ratings": "ratings",
    "density": "ratings / (users x items)",
    **{f"rating_{k}": f"fraction of ratings of {k} star{'s' * (k > 1)}" for k in range(1, 6)},
    "mean": "mean rating",
    "sd": "sd of the ratings",
    "user_mean_sd": "sd of the users' mean ratings",
    "median_user_ratings": "median ratings per user",
    "mean_user_ratings": "mean ratings per user",
    "min_user_ratings": "fewest ratings of a user",
    "max_user_ratings": "most ratings of a user",
    "max_item_ratings": "most ratings of an item",
    "q75_item_ratings": "75th percentile of ratings per item",
    "median_item_ratings": "median ratings per item",
    "items_with_1_rating": "fraction of items rated once",
    "items_with_at_most_5": "fraction of items rated at most 5 times",
    "item_gini": "Gini coefficient of the ratings per item",
    "feature_r2": "R2 of users' mean rating on gender + age + occupation",
    "feature_r2_adjusted": "the same, adjusted for the number of parameters",
}

#: The real ML-100K (943 users, 1,682 items, 100,000 ratings), where a value was published; None where we
#: found none. Sources: [G] GroupLens' ml-100k README (files.grouplens.org/datasets/movielens/ml-100k-README.txt);
#: [H] u.data's histogram as commonly quoted, 6,110 / 11,370 / 27,145 / 34,174 / 21,201 ratings of 1-5 stars
#: (the brief's 6.1 / 11.4 / 27.1 / 34.2 / 21.2%; not checked against the file here); [L] LensKit's
#: data description, codex.lenskit.org/movielens/ML100K/description.html; [K] KONECT, "MovieLens 100k",
#: konect.uni-koblenz.de/networks/movielens-100k_rating; [I] an ICACT 2020 talk on ML-100K (paper 20200192,
#: icact.org/Presentation/TTS.asp?page=13&pno=20200192); [B] the brief of this generator (commonly quoted values
#: that we did not find in a public source).
PUBLISHED_ML100K: dict[str, float | None] = {
    "n_users": 943,  # [G]
    "n_items": 1682,  # [G]; all are rated
    "n_ratings": 100_000,  # [G]
    "density": 0.06305,  # [L]: 6.305%; = 100,000 / (943 x 1,682)
    "rating_1": 0.0611,  # [H]
    "rating_2": 0.1137,  # [H]
    "rating_3": 0.27145,  # [H]
    "rating_4": 0.34174,  # [H]
    "rating_5": 0.21201,  # [H]
    "mean": 3.52986,  # computed from [H]
    "sd": 1.12567,  # computed from [H] (population sd)
    "user_mean_sd": 0.45,  # [B]: "about 0.45"; not found in a public source
    "median_user_ratings": 65,  # [B]
    "mean_user_ratings": 106.04,  # [K] (average user degree); = 100,000 / 943
    "min_user_ratings": 20,  # [G]: "each user has rated at least 20 movies"
    "max_user_ratings": 737,  # [K] (maximum degree, a user's)
    "max_item_ratings": 583,  # [I] ("the most rated movie has 583 ratings")
    "q75_item_ratings": 80,  # [I] ("75% ... with 80 ratings or less"): about
    "median_item_ratings": 27,  # [B]
    "items_with_1_rating": 141 / 1682,  # [I] ("141 movies received only 1 rating")
    "items_with_at_most_5": None,  # not published that we found
    "item_gini": 0.629,  # [L]
    "feature_r2": None,  # not published that we found
    "feature_r2_adjusted": None,
}


def gini(counts: npt.ArrayLike) -> float:
    """The Gini coefficient of non-negative counts: 0 when all are equal, towards 1 when one holds everything."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float(2 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


def _feature_r2(data: MovieLens, users: npt.NDArray[np.int64], means: npt.NDArray[np.float64]) -> tuple[float, float]:
    """In-sample and adjusted R2 of a least-squares fit of the users' mean rating on an intercept and one-hot
    gender, age group and occupation."""
    columns = [np.ones((len(users), 1))]
    for values in (data.gender[users], data.age[users], data.occupation[users]):
        levels = np.unique(values)
        columns.append((values[:, None] == levels[None, 1:]).astype(np.float64))  # the first level is the baseline
    design = np.concatenate(columns, axis=1)  # (n_users, 1 + parameters)
    coefficients, _, rank, _ = np.linalg.lstsq(design, means, rcond=None)
    residual = means - design @ coefficients
    total = float(np.sum((means - means.mean()) ** 2))
    if total == 0:
        return 0.0, 0.0
    r2 = 1.0 - float(residual @ residual) / total
    n, p = len(users), int(rank) - 1
    adjusted = 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1) if n > p + 1 else float("nan")
    return r2, adjusted


def movielens_statistics(data: MovieLens) -> dict[str, float]:
    """The statistics of :data:`STATISTICS` for one dataset (see there for what each measures)."""
    if data.n_ratings == 0:
        raise ValueError(f"{data.name} has no ratings to describe")
    rating = data.rating.astype(np.float64)
    per_user = np.bincount(data.user, minlength=data.n_users)
    per_item = np.bincount(data.item, minlength=data.n_items)
    users = np.flatnonzero(per_user)
    per_user, per_item = per_user[users], per_item[per_item > 0]
    means = np.bincount(data.user, weights=rating, minlength=data.n_users)[users] / per_user
    r2, adjusted = _feature_r2(data, users, means)
    stats: dict[str, float] = {
        "n_users": len(per_user),
        "n_items": len(per_item),
        "n_ratings": data.n_ratings,
        "density": data.n_ratings / (len(per_user) * len(per_item)),
        **{f"rating_{k}": float(np.mean(rating == k)) for k in range(1, 6)},
        "mean": float(rating.mean()),
        "sd": float(rating.std()),
        "user_mean_sd": float(means.std()),
        "median_user_ratings": float(np.median(per_user)),
        "mean_user_ratings": float(per_user.mean()),
        "min_user_ratings": int(per_user.min()),
        "max_user_ratings": int(per_user.max()),
        "max_item_ratings": int(per_item.max()),
        "q75_item_ratings": float(np.percentile(per_item, 75)),
        "median_item_ratings": float(np.median(per_item)),
        "items_with_1_rating": float(np.mean(per_item == 1)),
        "items_with_at_most_5": float(np.mean(per_item <= 5)),
        "item_gini": gini(per_item),
        "feature_r2": r2,
        "feature_r2_adjusted": adjusted,
    }
    return stats


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"


def describe_statistics(
    stats: dict[str, float],
    reference: dict[str, float | None] | None = PUBLISHED_ML100K,
    names: tuple[str, str] = ("data", "ML-100K"),
) -> str:
    """A table of the statistics, one per line, beside a reference (default: the published ML-100K; None for
    none); "-" where a value is missing."""
    rows = [("statistic", names[0], *names[1:2] * (reference is not None), "")]
    for key, meaning in STATISTICS.items():
        if key in stats or (reference is not None and key in reference):
            cells = [_cell(stats.get(key))]
            if reference is not None:
                cells.append(_cell(reference.get(key)))
            rows.append((key, *cells, meaning))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        first, *values, meaning = row
        cells = [first.ljust(widths[0]), *(v.rjust(w) for v, w in zip(values, widths[1:], strict=True))]
        lines.append("  ".join([*cells, meaning]).rstrip())
    return "\n".join(lines)
