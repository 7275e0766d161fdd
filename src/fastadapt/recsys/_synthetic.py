"""Synthetic MovieLens: files in exactly the GroupLens formats, with the structure that MeLU-style cold-start
recommendation relies on, for tests and for a demo that needs no download.

The generative model:

- users have a gender, an age group, an occupation and a zip code; their taste (a vector of ``rank`` factors)
  is the sum of a component per gender, per age group and per occupation plus individual noise, so that
  features predict taste and a new user's first ratings refine it;
- items have 1-3 genres and a release year; an item's factors are the mean of its genres' factors plus
  noise; popularity is Zipf-like (weight ``1 / rank^0.9``) and recent items are rated more often, as in
  MovieLens, so that the items released in or after the default cold-start year have ratings enough;
- each user rates between 15 and 150 distinct items (log-normal, median 45) drawn by popularity; the rating
  is ``taste . factors + user bias + item bias + noise``, standardised and quantised to 1-5 stars (mean about
  3.6, as in MovieLens); a user's timestamps strictly increase in the order the items were drawn.

ML-100K-format years run from 1930 to 1998 (``u.item`` release dates), ML-1M-format ones to 2000 with about a
quarter of the items released in 1998 or later. The titles are invented; a few carry Latin-1 characters
("Café", "Misérables") and one ML-100K item is "unknown" with no release date, as in the real ``u.item``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ._movielens import AGE_GROUPS, ML1M_GENRES, ML1M_OCCUPATIONS, ML100K_GENRES, ML100K_OCCUPATIONS

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WORDS = (
    "Night", "River", "Last", "Summer", "City", "Dark", "Love", "Return", "Secret", "Road", "Star", "Blue",
    "House", "Garden", "Storm", "Silent", "Golden", "Winter", "Island", "Stranger", "Fire", "Dream", "Game", "King",
)  # fmt: skip
_SPECIAL_TITLES = ("Café Lumière", "Misérables, Les", "Garçon, Le")
#: Per age group: the raw ages that ML-100K's ``u.user`` may hold.
_AGE_RANGES = ((7, 17), (18, 24), (25, 34), (35, 44), (45, 49), (50, 55), (56, 73))
_AGE_PROBS = (0.04, 0.18, 0.35, 0.2, 0.09, 0.08, 0.06)
#: Timestamps: ML-100K's ratings are from Sep 1997 - Apr 1998, ML-1M's from 2000 on.
_START = {"ml-100k": 874_724_710, "ml-1m": 956_703_932}


def _years(fmt: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Release years skewed towards the last years of the dataset."""
    last = 1998 if fmt == "ml-100k" else 2000
    age = np.minimum(rng.geometric(0.09, size=n) - 1, last - 1930)  # years before the last one
    return last - age  # (n,)


def _title(rng: np.random.Generator, i: int) -> str:
    if i < len(_SPECIAL_TITLES):
        return _SPECIAL_TITLES[i]
    first, second = rng.choice(len(_WORDS), size=2, replace=False)
    return f"{_WORDS[first]} {_WORDS[second]}"


def write_synthetic_movielens(
    directory: Path | str,
    fmt: Literal["ml-100k", "ml-1m"] = "ml-100k",
    *,
    n_users: int = 800,
    n_items: int = 1000,
    rank: int = 8,
    seed: int = 0,
) -> Path:
    """Writes synthetic ratings in MovieLens' file formats (see the module docstring for the model).

    Args:
        directory: where to write; the files go to ``directory/<fmt>/``, which is created.
        fmt: ``"ml-100k"`` (``u.data``, ``u.user``, ``u.item``, ``u.genre``, ``u.occupation``) or ``"ml-1m"``
            (``ratings.dat``, ``users.dat``, ``movies.dat``).
        n_users: number of users (at least 10).
        n_items: number of items (at least 150, the most ratings a user makes).
        rank: number of latent taste factors.
        seed: the files are a function of the arguments.

    Returns:
        The folder written, ``directory/<fmt>``; ``load_movielens(fmt, directory)`` reads it.
    """
    if fmt not in ("ml-100k", "ml-1m"):
        raise ValueError(f"fmt={fmt!r}; choose 'ml-100k' or 'ml-1m'")
    if n_users < 10 or n_items < 150:
        raise ValueError(f"n_users={n_users}, n_items={n_items}: need at least 10 users and 150 items")
    rng = np.random.default_rng(seed)
    genre_names = ML100K_GENRES[1:] if fmt == "ml-100k" else ML1M_GENRES  # "unknown" only for the odd item
    n_occupations = len(ML100K_OCCUPATIONS) if fmt == "ml-100k" else ML1M_OCCUPATIONS

    # Users: features, then a taste built from them.
    gender = (rng.random(n_users) < 0.29).astype(np.int64)  # 1 = F
    age = rng.choice(len(AGE_GROUPS), size=n_users, p=_AGE_PROBS)
    occupation = rng.integers(0, n_occupations, size=n_users)
    by_gender, by_age, by_job = (rng.normal(0, 0.6, (k, rank)) for k in (2, len(AGE_GROUPS), n_occupations))
    taste = by_gender[gender] + by_age[age] + by_job[occupation] + rng.normal(0, 0.5, (n_users, rank))  # (U, r)
    user_bias = rng.normal(0, 0.35, n_users)

    # Items: genres, years, factors, popularity.
    n_genres = rng.choice([1, 2, 3], size=n_items, p=[0.5, 0.35, 0.15])
    genres = np.zeros((n_items, len(genre_names)), dtype=np.int64)  # (I, G)
    for i, k in enumerate(n_genres):
        genres[i, rng.choice(len(genre_names), size=k, replace=False)] = 1
    by_genre = rng.normal(0, 1.0, (len(genre_names), rank))
    factors = genres @ by_genre / genres.sum(1, keepdims=True) + rng.normal(0, 0.5, (n_items, rank))  # (I, r)
    item_bias = rng.normal(0, 0.35, n_items)
    years = _years(fmt, n_items, rng)
    recency = np.exp(-(years.max() - years) / 4.0)  # recent films are rated more
    popularity = (1.0 / rng.permutation(np.arange(1, n_items + 1)) ** 0.9) * (0.3 + recency)

    # Ratings.
    counts = np.clip(np.round(np.exp(rng.normal(np.log(45), 0.65, n_users))), 15, 150).astype(int)
    rows = []
    for u in range(n_users):
        rated = rng.choice(n_items, size=counts[u], replace=False, p=popularity / popularity.sum())
        score = factors[rated] @ taste[u] / np.sqrt(rank) + user_bias[u] + item_bias[rated]
        start = _START[fmt] + int(rng.integers(0, 180 * 86_400))
        times = start + np.cumsum(rng.integers(1, 3_600, size=counts[u]))  # strictly increasing
        rows += [(u, int(i), float(s), int(t)) for i, s, t in zip(rated, score, times, strict=True)]
    raw = np.array([s for _, _, s, _ in rows])
    raw = raw + rng.normal(0, 0.4, len(raw))
    stars = np.clip(np.round(3.6 + 1.1 * (raw - raw.mean()) / raw.std()), 1, 5).astype(int)

    # Files.
    folder = Path(directory) / fmt
    folder.mkdir(parents=True, exist_ok=True)
    user_ids, item_ids = np.arange(1, n_users + 1), np.arange(1, n_items + 1)
    zips = [
        f"{rng.integers(0, 100_000):05d}" if rng.random() > 0.03 else f"T{rng.integers(0, 10)}H{rng.integers(0, 10)}N"
        for _ in range(n_users)
    ]
    gender_code = np.array(["M", "F"])[gender]
    titles = [_title(rng, i) for i in range(n_items)]
    if fmt == "ml-100k":
        ages = [int(rng.integers(*_AGE_RANGES[a], endpoint=True)) for a in age]
        users = [
            f"{user_ids[u]}|{ages[u]}|{gender_code[u]}|{ML100K_OCCUPATIONS[occupation[u]]}|{zips[u]}"
            for u in range(n_users)
        ]
        items = []
        for i in range(n_items):
            flags, title = "|".join(["0", *map(str, genres[i])]), f"{titles[i]} ({years[i]})"
            date = f"{rng.integers(1, 29):02d}-{_MONTHS[rng.integers(0, 12)]}-{years[i]}"
            if i == n_items - 1:  # as item 267 of the real u.item: no title, date or genre
                title, date, flags = "unknown", "", "|".join(["1"] + ["0"] * len(genre_names))
            items.append(f"{item_ids[i]}|{title}|{date}||http://example.org/{item_ids[i]}|{flags}")
        order = rng.permutation(len(rows))  # u.data is not sorted
        ratings = [f"{user_ids[rows[r][0]]}\t{item_ids[rows[r][1]]}\t{stars[r]}\t{rows[r][3]}" for r in order]
        _write(folder / "u.data", ratings)
        _write(folder / "u.user", users)
        _write(folder / "u.item", items)
        _write(folder / "u.genre", [f"{g}|{i}" for i, g in enumerate(ML100K_GENRES)])
        _write(folder / "u.occupation", list(ML100K_OCCUPATIONS))
    else:
        users = [
            f"{user_ids[u]}::{gender_code[u]}::{AGE_GROUPS[age[u]]}::{occupation[u]}::{zips[u]}" for u in range(n_users)
        ]
        items = [
            f"{item_ids[i]}::{titles[i]} ({years[i]})::" + "|".join(np.array(genre_names)[genres[i] == 1])
            for i in range(n_items)
        ]
        ratings = [f"{user_ids[u]}::{item_ids[i]}::{stars[r]}::{t}" for r, (u, i, _, t) in enumerate(rows)]
        _write(folder / "ratings.dat", ratings)
        _write(folder / "users.dat", users)
        _write(folder / "movies.dat", items)
    return folder


def _write(path: Path, lines: list[str]) -> None:
    """Latin-1 with Unix line ends, as GroupLens publishes."""
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
