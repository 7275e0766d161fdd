"""Synthetic MovieLens: files in exactly the GroupLens formats, calibrated to look like ML-100K where it matters
for cold-start recommendation (MeLU, Lee et al., KDD 2019, arXiv:1908.00413), for tests and for a demo that
needs no download. :func:`fastadapt.recsys.movielens_statistics` measures how close it is.

The generative model, in a latent unit-variance score that is then quantised:

- users have a gender, an age group and an occupation (drawn with ML-100K's / ML-1M's published shares) and a
  zip code; a user's bias and ``rank`` taste factors are mostly individual: the features explain only
  ``feature_share`` (5%) of their variance, so that they say little about a new user;
- items have 1-3 genres and a release year; the genres explain ``genre_share`` (35%) of an item's bias and
  factors;
- popularity is a long tail (log weights from a two-piece normal under a soft ceiling, fitted to ML-100K's item
  counts: the most rated item 583 times, median 27, 8.4% of the items rated once, Gini 0.63), recent films
  rated more, so that the items released in or after the default cold-start year keep ratings enough; popular
  items are rated a little higher, as in MovieLens;
- every user rates at least 20 items (as in ML-100K) and at most ``n_items / 2``; the rest of the activity is
  gamma-distributed (ML-100K: median 65, mean 106), scaled to ``density`` (ML-100K: 6.3%); heavy users rate a
  little lower; a user's items are drawn by popularity without replacement, their timestamps strictly increase
  in that order, and an item nobody drew gets one rating (every item of ML-100K is rated);
- the score is ``user bias + item bias + taste . factors + noise`` with variance shares 17.5% / 18.5% / 14% /
  50%; it becomes 1-5 stars at the quantiles of ML-100K's rating histogram (6.1 / 11.4 / 27.1 / 34.2 /
  21.2%), so that the histogram, mean (3.53) and sd (1.13) match by construction. At ML-100K's size the sd of
  the users' mean ratings is then about ML-100K's 0.45 (more at fewer ratings per user), a biases-only model
  fitted on 80% of the ratings has an RMSE of about 0.93-0.95 on the rest and a rank-10 matrix factorisation
  about 0.91-0.93 (ML-100K: about 0.94 and 0.90).

ML-100K-format years run from 1930 to 1998 (``u.item`` release dates), ML-1M-format ones to 2000 with about a
quarter of the items released in 1998 or later. The titles are invented; a few carry Latin-1 characters
("Café", "Misérables") and one ML-100K item is "unknown" with no release date, as in the real ``u.item``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from ._movielens import AGE_GROUPS, ML1M_GENRES, ML100K_GENRES, ML100K_OCCUPATIONS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: ML-100K's rating histogram: 6,110 / 11,370 / 27,145 / 34,174 / 21,201 of its 100,000 ratings are 1-5 stars.
ML100K_RATING_SHARES: tuple[float, ...] = (0.0611, 0.1137, 0.27145, 0.34174, 0.21201)
#: Variance shares of the latent score: user bias, item bias, taste . factors; the rest is noise. Chosen so that
#: the sd of users' mean ratings is about 0.45 and the biases alone leave an RMSE of about 0.94, as on ML-100K.
_USER_VAR, _ITEM_VAR, _TASTE_VAR = 0.175, 0.185, 0.14
_MIN_RATINGS = 20  # ML-100K: "each user has rated at least 20 movies"
_MIN_MEAN_RATINGS = 45  # users average at least this many ratings, for cold-start tasks enough on few items
_ACTIVITY_SHAPE = 0.6  # gamma activity above the minimum: ML-100K's median / mean (45 / 86 above 20) and max 737
#: Log item weights: sd below / above the median and a soft ceiling, for ML-100K's item counts (the most rated
#: item 583 times, median 27, 75th percentile 80, 8.4% of the items rated once, Gini 0.63).
_POPULARITY_SIGMAS, _POPULARITY_CEILING = (2.0, 1.5), 4.0
_POPULARITY_BIAS = 0.35  # correlation of an item's bias with its (log) popularity
_ACTIVITY_BIAS = -0.2  # correlation of a user's bias with their (log) activity
#: Occupation counts: ML-100K's ``u.user`` (943 users, in the order of ``u.occupation``) and ML-1M's
#: ``users.dat`` (6,040 users, by code 0-20).
_ML100K_JOBS = (79, 28, 7, 95, 67, 18, 32, 16, 7, 12, 51, 26, 9, 105, 66, 14, 12, 31, 196, 27, 45)
_ML1M_JOBS = (711, 528, 267, 173, 759, 112, 236, 679, 17, 92, 195, 129, 388, 142, 302, 144, 241, 502, 70, 72, 281)
_FEMALE = 0.29  # ML-100K: 273 of 943 users; ML-1M: 1,709 of 6,040

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WORDS = (
    "Night", "River", "Last", "Summer", "City", "Dark", "Love", "Return", "Secret", "Road", "Star", "Blue",
    "House", "Garden", "Storm", "Silent", "Golden", "Winter", "Island", "Stranger", "Fire", "Dream", "Game", "King",
)  # fmt: skip
_SPECIAL_TITLES = ("Café Lumière", "Misérables, Les", "Garçon, Le")
#: Per age group: the raw ages that ML-100K's ``u.user`` may hold.
_AGE_RANGES = ((7, 17), (18, 24), (25, 34), (35, 44), (45, 49), (50, 55), (56, 73))
_AGE_PROBS = (0.04, 0.18, 0.35, 0.2, 0.09, 0.08, 0.06)  # ML-1M's users.dat, 222 / 1,103 / 2,096 / ... of 6,040
#: Timestamps: ML-100K's ratings are from Sep 1997 - Apr 1998, ML-1M's from 2000 on.
_START = {"ml-100k": 874_724_710, "ml-1m": 956_703_932}


def _years(fmt: str, n: int, rng: np.random.Generator) -> IntArray:
    """Release years skewed towards the last years of the dataset."""
    last = 1998 if fmt == "ml-100k" else 2000
    age = np.minimum(rng.geometric(0.09, size=n) - 1, last - 1930)  # years before the last one
    return (last - age).astype(np.int64)  # (n,)


def _standardised(x: FloatArray) -> FloatArray:
    """Columns with mean 0 and sd 1 (a constant column becomes 0)."""
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _partly_explained(signal: FloatArray, share: float, rng: np.random.Generator) -> FloatArray:
    """``sqrt(share) * standardised(signal) + sqrt(1 - share) * noise``: unit-variance columns of which
    ``share`` of the variance is the signal's. ``signal``: ``(n, k)``; returns ``(n, k)``."""
    noise = rng.normal(size=signal.shape)
    return np.sqrt(share) * _standardised(signal) + np.sqrt(1.0 - share) * noise


def _activity(n_users: int, n_items: int, density: float, rng: np.random.Generator) -> IntArray:
    """Ratings per user: ``_MIN_RATINGS`` plus a gamma-distributed amount, scaled so that the users average
    ``density * n_items`` (at least ``_MIN_MEAN_RATINGS``), capped at ``n_items // 2``."""
    cap = max(_MIN_RATINGS, n_items // 2)
    target = min(max(density * n_items, _MIN_MEAN_RATINGS), cap) * n_users
    extra = rng.gamma(_ACTIVITY_SHAPE, size=n_users)
    low, high = 0.0, 4.0 * target / extra.sum() + 1.0
    for _ in range(50):  # bisection on the scale: the cap makes the total non-linear in it
        scale = (low + high) / 2
        total = np.minimum(_MIN_RATINGS + scale * extra, cap).sum()
        low, high = (scale, high) if total < target else (low, scale)
    return np.minimum(_MIN_RATINGS + np.round(low * extra), cap).astype(np.int64)  # (U,)


def _popularity(years: IntArray, rng: np.random.Generator) -> FloatArray:
    """Log sampling weights of the items: a two-piece normal (a longer tail of obscure films) with a soft
    ceiling (the most popular films are not rated by everyone), recent films weighing more."""
    z = rng.normal(size=len(years))
    spread = np.where(z < 0, _POPULARITY_SIGMAS[0], _POPULARITY_SIGMAS[1]) * z
    ceiling = _POPULARITY_CEILING - np.logaddexp(0.0, _POPULARITY_CEILING - spread)
    recency = np.exp(-(years.max() - years) / 4.0)
    return ceiling + np.log(0.3 + recency)  # (I,)


def _draw_items(log_weight: FloatArray, counts: IntArray, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
    """``(user, item)`` of every rating: per user, ``counts[u]`` distinct items drawn by weight without
    replacement (the Gumbel top-k trick, equivalent to successive weighted draws), then one rating of every item
    left unrated by a user below the cap (ML-100K lists only rated films). Users one after another, each user's
    items in the order drawn."""
    n_items = len(log_weight)
    drawn = []
    for start in range(0, len(counts), 256):  # blocks of users bound the (users, items) key matrix
        block = counts[start : start + 256]
        keys = log_weight + rng.gumbel(size=(len(block), n_items))  # (b, I)
        order = np.argsort(-keys, axis=1)
        drawn.append(order[np.arange(n_items) < block[:, None]])  # row-major: user by user
    item = np.concatenate(drawn)
    user = np.repeat(np.arange(len(counts)), counts)
    unrated = np.flatnonzero(np.bincount(item, minlength=n_items) == 0)
    room = np.flatnonzero(counts < max(_MIN_RATINGS, n_items // 2))
    if len(unrated) and len(room):
        user = np.concatenate([user, rng.choice(room, size=len(unrated), replace=len(unrated) > len(room))])
        item = np.concatenate([item, unrated])
        order = np.argsort(user, kind="stable")  # the extra ratings come last in their user's sequence
        user, item = user[order], item[order]
    return user.astype(np.int64), item.astype(np.int64)  # (R,), (R,)


def _title_words(n: int, rng: np.random.Generator) -> list[str]:
    first = rng.integers(0, len(_WORDS), size=n)
    second = (first + rng.integers(1, len(_WORDS), size=n)) % len(_WORDS)  # a different word
    titles = [f"{_WORDS[a]} {_WORDS[b]}" for a, b in zip(first.tolist(), second.tolist(), strict=True)]
    return [*_SPECIAL_TITLES[:n], *titles[len(_SPECIAL_TITLES) :]]


@dataclass(frozen=True)
class _Sample:
    """The generated tables: per user ``(U,)``, per item ``(I,)`` or ``(I, G)``, per rating ``(R,)``, each user's
    ratings together and in time order."""

    gender: IntArray
    age: IntArray
    occupation: IntArray
    zips: list[str]
    genres: IntArray
    years: IntArray
    titles: list[str]
    user: IntArray
    item: IntArray
    stars: IntArray
    times: IntArray


def _sample(
    fmt: str, n_users: int, n_items: int, rank: int, density: float, feature_share: float, genre_share: float,
    rng: np.random.Generator,
) -> _Sample:  # fmt: skip
    """Draws the model of the module docstring."""
    n_genres_total = len(ML1M_GENRES)  # ML-100K's "unknown" only for its odd item
    jobs = np.array(_ML100K_JOBS if fmt == "ml-100k" else _ML1M_JOBS, dtype=np.float64)

    # Users: features, activity, then bias and taste, mostly individual.
    gender = (rng.random(n_users) < _FEMALE).astype(np.int64)  # 1 = F
    age = rng.choice(len(AGE_GROUPS), size=n_users, p=_AGE_PROBS)
    occupation = rng.choice(len(jobs), size=n_users, p=jobs / jobs.sum())
    counts = _activity(n_users, n_items, density, rng)  # (U,)
    effects = [rng.normal(size=(k, 1 + rank)) for k in (2, len(AGE_GROUPS), len(jobs))]
    latent = _partly_explained(effects[0][gender] + effects[1][age] + effects[2][occupation], feature_share, rng)
    busy = _standardised(np.log(counts.astype(np.float64))[:, None])[:, 0]
    user_bias = np.sqrt(_USER_VAR) * (np.sqrt(1 - _ACTIVITY_BIAS**2) * latent[:, 0] + _ACTIVITY_BIAS * busy)
    taste = np.sqrt(_TASTE_VAR / rank) * latent[:, 1:]  # (U, r)

    # Items: genres, years, popularity, then bias and factors, partly from the genres.
    n_genres = rng.choice([1, 2, 3], size=n_items, p=[0.5, 0.35, 0.15])
    genres = np.zeros((n_items, n_genres_total), dtype=np.int64)  # (I, G)
    for i, k in enumerate(n_genres):
        genres[i, rng.choice(n_genres_total, size=k, replace=False)] = 1
    years = _years(fmt, n_items, rng)
    log_weight = _popularity(years, rng)
    by_genre = rng.normal(size=(n_genres_total, 1 + rank))
    latent = _partly_explained(genres @ by_genre / n_genres[:, None], genre_share, rng)  # (I, 1 + r)
    popular = _standardised(log_weight[:, None])[:, 0]
    item_bias = np.sqrt(_ITEM_VAR) * (np.sqrt(1 - _POPULARITY_BIAS**2) * latent[:, 0] + _POPULARITY_BIAS * popular)
    factors = latent[:, 1:]  # (I, r), unit variance: taste . factors has variance _TASTE_VAR

    # Ratings: who rated what, the latent score, stars at ML-100K's quantiles, timestamps.
    user, item = _draw_items(log_weight, counts, rng)  # (R,), (R,)
    counts = np.bincount(user, minlength=n_users)
    noise_var = 1.0 - _USER_VAR - _ITEM_VAR - _TASTE_VAR
    score = user_bias[user] + item_bias[item] + np.einsum("rk,rk->r", taste[user], factors[item])
    score = score + np.sqrt(noise_var) * rng.normal(size=len(user))
    thresholds = np.quantile(score, np.cumsum(ML100K_RATING_SHARES)[:-1])
    stars = 1 + np.searchsorted(thresholds, score)  # (R,) in 1..5
    steps = np.cumsum(rng.integers(1, 3_600, size=len(user)))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each user's first rating
    start = _START[fmt] + rng.integers(0, 180 * 86_400, size=n_users)
    times = np.repeat(start - steps[first], counts) + steps  # strictly increasing within a user

    foreign = rng.random(n_users) < 0.03  # Canadian-style codes
    codes, letters = rng.integers(0, 100_000, size=n_users), rng.integers(0, 10, size=(n_users, 2))
    zips = [f"T{a}H{b}N" if f else f"{c:05d}" for f, c, (a, b) in zip(foreign, codes, letters.tolist(), strict=True)]
    titles = _title_words(n_items, rng)
    return _Sample(gender, age, occupation, zips, genres, years, titles, user, item, stars, times)


def write_synthetic_movielens(
    directory: Path | str,
    fmt: Literal["ml-100k", "ml-1m"] = "ml-100k",
    *,
    n_users: int = 800,
    n_items: int = 1000,
    rank: int = 8,
    seed: int = 0,
    density: float = 0.063,
    feature_share: float = 0.05,
    genre_share: float = 0.35,
) -> Path:
    """Writes synthetic ratings in MovieLens' file formats (see the module docstring for the model).

    Args:
        directory: where to write; the files go to ``directory/<fmt>/``, which is created.
        fmt: ``"ml-100k"`` (``u.data``, ``u.user``, ``u.item``, ``u.genre``, ``u.occupation``) or ``"ml-1m"``
            (``ratings.dat``, ``users.dat``, ``movies.dat``).
        n_users: number of users (at least 10).
        n_items: number of items (at least 150).
        rank: number of latent taste factors.
        seed: the files are a function of the arguments.
        density: the fraction of the (user, item) pairs rated (ML-100K: 0.063), unless users would average
            fewer than 45 ratings (then 45) or more than ``n_items / 2`` (then that).
        feature_share: the share of the variance of a user's bias and of each taste factor that their gender,
            age group and occupation explain (0: none, 1: all).
        genre_share: the share of the variance of an item's bias and of each of its factors that its genres
            explain.

    Returns:
        The folder written, ``directory/<fmt>``; ``load_movielens(fmt, directory)`` reads it.
    """
    if fmt not in ("ml-100k", "ml-1m"):
        raise ValueError(f"fmt={fmt!r}; choose 'ml-100k' or 'ml-1m'")
    if n_users < 10 or n_items < 150:
        raise ValueError(f"n_users={n_users}, n_items={n_items}: need at least 10 users and 150 items")
    if not (0.0 < density <= 0.5 and 0.0 <= feature_share <= 1.0 and 0.0 <= genre_share <= 1.0):
        raise ValueError(
            f"density={density}, feature_share={feature_share}, genre_share={genre_share}: density must be in "
            "(0, 0.5], the shares in [0, 1]"
        )
    rng = np.random.default_rng(seed)
    sample = _sample(fmt, n_users, n_items, rank, density, feature_share, genre_share, rng)
    folder = Path(directory) / fmt
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "ml-100k":
        _write_ml100k(folder, sample, rng)
    else:
        _write_ml1m(folder, sample)
    return folder


def _write_ml100k(folder: Path, s: _Sample, rng: np.random.Generator) -> None:
    """``u.data`` (shuffled, as published), ``u.user`` (raw ages), ``u.item`` (release dates, 19 genre flags,
    the last item "unknown"), ``u.genre``, ``u.occupation``."""
    low, high = np.array(_AGE_RANGES).T
    ages = rng.integers(low[s.age], high[s.age], endpoint=True)
    gender = np.array(["M", "F"])[s.gender]
    users = [
        f"{u + 1}|{ages[u]}|{gender[u]}|{ML100K_OCCUPATIONS[s.occupation[u]]}|{s.zips[u]}" for u in range(len(ages))
    ]
    n_items = len(s.years)
    days, months = rng.integers(1, 29, size=n_items), rng.integers(0, 12, size=n_items)
    items = []
    for i in range(n_items):
        flags, title = "|".join(["0", *map(str, s.genres[i])]), f"{s.titles[i]} ({s.years[i]})"
        date = f"{days[i]:02d}-{_MONTHS[months[i]]}-{s.years[i]}"
        if i == n_items - 1:  # as item 267 of the real u.item: no title, date or genre
            title, date, flags = "unknown", "", "|".join(["1"] + ["0"] * s.genres.shape[1])
        items.append(f"{i + 1}|{title}|{date}||http://example.org/{i + 1}|{flags}")
    order = rng.permutation(len(s.user))  # u.data is not sorted
    _write(folder / "u.data", _lines("\t", s.user[order] + 1, s.item[order] + 1, s.stars[order], s.times[order]))
    _write(folder / "u.user", users)
    _write(folder / "u.item", items)
    _write(folder / "u.genre", [f"{g}|{i}" for i, g in enumerate(ML100K_GENRES)])
    _write(folder / "u.occupation", list(ML100K_OCCUPATIONS))


def _write_ml1m(folder: Path, s: _Sample) -> None:
    """``ratings.dat`` (by user, in time order), ``users.dat`` (age group codes), ``movies.dat``."""
    gender = np.array(["M", "F"])[s.gender]
    users = [
        f"{u + 1}::{gender[u]}::{AGE_GROUPS[s.age[u]]}::{s.occupation[u]}::{s.zips[u]}" for u in range(len(gender))
    ]
    names = np.array(ML1M_GENRES)
    items = [f"{i + 1}::{title} ({year})::" + "|".join(names[s.genres[i] == 1]) for i, (title, year) in enumerate(
        zip(s.titles, s.years.tolist(), strict=True)
    )]  # fmt: skip
    _write(folder / "ratings.dat", _lines("::", s.user + 1, s.item + 1, s.stars, s.times))
    _write(folder / "users.dat", users)
    _write(folder / "movies.dat", items)


def _lines(sep: str, *columns: IntArray) -> list[str]:
    """One line per row of the columns, ``sep``-separated."""
    return [sep.join(map(str, row)) for row in zip(*(c.tolist() for c in columns), strict=True)]


def _write(path: Path, lines: list[str]) -> None:
    """Latin-1 with Unix line ends, as GroupLens publishes."""
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
