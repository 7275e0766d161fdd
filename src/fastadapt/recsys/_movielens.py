"""MovieLens 100K and 1M (Harper & Konstan 2015, ACM TiiS 5(4)) read from the GroupLens files, in the folder
or zip the publisher ships, as integer-indexed ratings with the user and item features of MeLU (Lee et al.,
KDD 2019, arXiv:1908.00413).

The two datasets share their user features so that one model serves both: ML-100K's raw ages are bucketed into
ML-1M's seven age groups, and the zip code becomes the category of its first digit. They differ in two:
occupation (ML-100K: 21 names, ML-1M: 21 codes, not mapped onto each other) and genres (ML-100K: the 19 flags
of ``u.item``, "unknown" first; ML-1M: the 18 genres of ``movies.dat``); ``genre_names`` says which.

Every item listed in ``u.item`` / ``movies.dat`` gets an index, rated or not (ML-1M lists 3,883 movies of which
3,706 are rated), and every user listed in ``u.user`` / ``users.dat``, in the order of their original ids.
"""

from __future__ import annotations

import bisect
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..data import REGISTRY, DataError, dataset_dir

MovieLensName = Literal["ml-100k", "ml-1m"]

#: ML-100K's genre flags, in the order of ``u.item`` (and ``u.genre``).
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
#: ML-1M's genres (``movies.dat``): ML-100K's without "unknown".
ML1M_GENRES: tuple[str, ...] = ML100K_GENRES[1:]
#: ML-100K's occupations (``u.occupation``), used when that file is absent.
ML100K_OCCUPATIONS: tuple[str, ...] = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive", "healthcare",
    "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer", "retired", "salesman",
    "scientist", "student", "technician", "writer",
)  # fmt: skip
#: ML-1M's age codes, each the lower bound of its group: under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+.
AGE_GROUPS: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)
#: ML-1M's occupation codes are 0-20.
ML1M_OCCUPATIONS = 21
#: Zip prefixes: the first digit 0-9, and category 10 for a zip that does not start with a digit.
ZIP_PREFIXES = 11

_FILES = {"ml-100k": ("u.data", "u.user", "u.item"), "ml-1m": ("ratings.dat", "users.dat", "movies.dat")}
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
_RELEASE_DATE = re.compile(r"\d{1,2}-[A-Za-z]{3}-(\d{4})")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class MovieLens:
    """Ratings with user and item features; users and items are indices ``0..n-1``.

    Attributes:
        name: ``"ml-100k"`` or ``"ml-1m"``.
        user, item: ``(n_ratings,)`` int64 indices of who rated what.
        rating: ``(n_ratings,)`` float32 ratings (1-5 stars).
        timestamp: ``(n_ratings,)`` int64 seconds since the epoch.
        user_ids: ``(n_users,)`` int64 original user ids (index -> id).
        gender: ``(n_users,)`` int64, 0 = M, 1 = F.
        age: ``(n_users,)`` int64 age group, the index in :data:`AGE_GROUPS`.
        occupation: ``(n_users,)`` int64, ML-1M's code or the index in ML-100K's occupation list.
        zip_prefix: ``(n_users,)`` int64, the zip code's first digit, or 10 if it does not start with one.
        item_ids: ``(n_items,)`` int64 original movie ids (index -> id).
        titles: ``n_items`` titles, as published (with the year in parentheses).
        year: ``(n_items,)`` int64 release year, 0 if unknown.
        genres: ``(n_items, n_genres)`` float32 multi-hot over ``genre_names``.
        genre_names: the genres' names.
        occupations: the number of occupation categories.
    """

    name: str
    user: IntArray
    item: IntArray
    rating: FloatArray
    timestamp: IntArray
    user_ids: IntArray
    gender: IntArray
    age: IntArray
    occupation: IntArray
    zip_prefix: IntArray
    item_ids: IntArray
    titles: list[str]
    year: IntArray
    genres: FloatArray
    genre_names: tuple[str, ...]
    occupations: int = ML1M_OCCUPATIONS

    def __post_init__(self) -> None:
        groups: tuple[tuple[str, tuple[str, ...]], ...] = (
            ("user", ("item", "rating", "timestamp")),
            ("user_ids", ("gender", "age", "occupation", "zip_prefix")),
            ("item_ids", ("titles", "year", "genres")),
        )
        for reference, fields in groups:
            expected = len(getattr(self, reference))
            for key in fields:
                if (rows := len(getattr(self, key))) != expected:
                    raise ValueError(f"MovieLens.{key} has {rows} rows but {reference} has {expected}")
        if self.genres.ndim != 2 or self.genres.shape[1] != len(self.genre_names):
            raise ValueError(f"genres has shape {self.genres.shape}; expected (n_items, {len(self.genre_names)})")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_ratings(self) -> int:
        return len(self.user)

    @property
    def feature_sizes(self) -> dict[str, int]:
        """Cardinalities for embedding tables: ``{"gender", "age", "occupation", "zip_prefix", "genres"}``."""
        return {
            "gender": 2,
            "age": len(AGE_GROUPS),
            "occupation": self.occupations,
            "zip_prefix": ZIP_PREFIXES,
            "genres": len(self.genre_names),
        }


@dataclass(frozen=True)
class _Files:
    """The files of one dataset, in a folder or a zip (under ``prefix`` inside it)."""

    name: str
    location: Path
    prefix: str = ""

    @property
    def url(self) -> str:
        return REGISTRY[self.name].files[0].url

    def where(self, file: str) -> str:
        return f"{self.location}:{self.prefix}{file}" if self.location.is_file() else str(self.location / file)

    def has(self, file: str) -> bool:
        if self.location.is_dir():
            return (self.location / file).is_file()
        with zipfile.ZipFile(self.location) as archive:
            return self.prefix + file in archive.namelist()

    def read(self, file: str) -> str:
        """The file as text. MovieLens is Latin-1 (titles in ``u.item`` / ``movies.dat``, e.g. "Misérables")."""
        if not self.has(file):
            raise DataError(
                f"{self.where(file)} is missing: {self.name} needs {', '.join(_FILES[self.name])}. "
                + _fetch_hint(self.name)
            )
        if self.location.is_dir():
            return (self.location / file).read_bytes().decode("latin-1")
        with zipfile.ZipFile(self.location) as archive:
            return archive.read(self.prefix + file).decode("latin-1")

    def rows(self, file: str, sep: str, fields: int, layout: str) -> Iterator[tuple[int, str, list[str]]]:
        """``(line number, line, fields)`` of every non-blank line, each with exactly ``fields`` fields."""
        for number, line in enumerate(self.read(file).splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split(sep)
            if len(parts) != fields:
                raise self.malformed(file, number, line, f"{len(parts)} fields where {layout} has {fields}")
            yield number, line, parts

    def malformed(self, file: str, number: int, line: str, problem: str) -> DataError:
        return DataError(
            f"{self.where(file)}, line {number}: {problem}: {line[:200]!r}. The file is damaged or not "
            f"{self.name}'s; extract it again from {self.name}.zip ({self.url})"
        )


def _fetch_hint(name: str) -> str:
    return (
        f"Download {name}.zip ({REGISTRY[name].files[0].url}) with `fastadapt data download {name}`, or register "
        f"a copy you downloaded with `fastadapt data import {name} PATH`; or pass root= a folder holding "
        f"{name}/ or {name}.zip"
    )


def _locate(name: str, root: Path) -> _Files:
    """The first of ``root/<name>/``, ``root/<name>.zip``, ``root`` itself (a folder or a zip) holding the files."""
    ratings = _FILES[name][0]
    for folder in (root / name, root):
        if (folder / ratings).is_file():
            return _Files(name, folder)
    for archive in (root / f"{name}.zip", root):
        if archive.is_file() and zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                entries = set(z.namelist())
            for prefix in (f"{name}/", ""):
                if prefix + ratings in entries:
                    return _Files(name, archive, prefix)
    raise DataError(
        f"no {name} files in {root}: expected the folder {root / name}/ or {root / name}.zip. " + _fetch_hint(name)
    )


def _age_group(age: int) -> int:
    """Index in :data:`AGE_GROUPS` of a raw age (ML-100K) or of an ML-1M age code."""
    return bisect.bisect_right(AGE_GROUPS[1:], age)


def _zip_prefix(code: str) -> int:
    code = code.strip()
    return int(code[0]) if code[:1].isdigit() else ZIP_PREFIXES - 1


def _title_year(title: str) -> int:
    found = _TITLE_YEAR.search(title)
    return int(found.group(1)) if found else 0


def _index(ids: list[int], files: _Files, file: str) -> dict[int, int]:
    index = {original: i for i, original in enumerate(ids)}
    if len(index) != len(ids):
        raise DataError(f"{files.where(file)} lists the same id twice; extract it again from {files.url}")
    return index


def _read_users(files: _Files) -> tuple[list[int], list[tuple[int, int, int, int]], int]:
    """``(ids, [(gender, age group, occupation, zip prefix)], number of occupations)`` sorted by id."""
    genders = {"M": 0, "F": 1}
    users: list[tuple[int, tuple[int, int, int, int]]] = []
    if files.name == "ml-100k":
        occupations = ML100K_OCCUPATIONS
        if files.has("u.occupation"):
            occupations = tuple(line.strip() for line in files.read("u.occupation").splitlines() if line.strip())
        codes = {o: i for i, o in enumerate(occupations)}
        for number, line, (uid, age, gender, job, zip_code) in files.rows(
            "u.user", "|", 5, "user id|age|gender|occupation|zip code"
        ):
            if gender not in genders or job not in codes or not age.isdigit() or not uid.isdigit():
                raise files.malformed("u.user", number, line, "expected id|age|M or F|occupation|zip")
            users.append((int(uid), (genders[gender], _age_group(int(age)), codes[job], _zip_prefix(zip_code))))
        n_occupations = len(occupations)
    else:
        for number, line, (uid, gender, age, job, zip_code) in files.rows(
            "users.dat", "::", 5, "UserID::Gender::Age::Occupation::Zip-code"
        ):
            ok = uid.isdigit() and gender in genders and age.isdigit() and int(age) in AGE_GROUPS
            if not (ok and job.isdigit() and int(job) < ML1M_OCCUPATIONS):
                raise files.malformed("users.dat", number, line, f"expected id::M or F::{AGE_GROUPS}::0-20::zip")
            users.append((int(uid), (genders[gender], _age_group(int(age)), int(job), _zip_prefix(zip_code))))
        n_occupations = ML1M_OCCUPATIONS
    users.sort()
    return [u for u, _ in users], [f for _, f in users], n_occupations


def _read_items(files: _Files) -> tuple[list[int], list[str], list[int], list[list[float]]]:
    """``(ids, titles, years, multi-hot genres)`` sorted by id."""
    items: list[tuple[int, str, int, list[float]]] = []
    if files.name == "ml-100k":
        layout = "movie id|title|release date|video release date|IMDb URL|19 genre flags"
        for number, line, fields in files.rows("u.item", "|", 5 + len(ML100K_GENRES), layout):
            date, flags = fields[2].strip(), fields[5:]
            released = _RELEASE_DATE.fullmatch(date)
            if not fields[0].isdigit() or (date and not released) or any(f not in ("0", "1") for f in flags):
                raise files.malformed("u.item", number, line, "expected id|title|dd-Mon-yyyy|...|19 flags 0 or 1")
            year = int(released.group(1)) if released else _title_year(fields[1])
            items.append((int(fields[0]), fields[1], year, [float(f) for f in flags]))
    else:
        names = {g: i for i, g in enumerate(ML1M_GENRES)}
        for number, line, (mid, title, genres) in files.rows("movies.dat", "::", 3, "MovieID::Title::Genres"):
            multi_hot = [0.0] * len(ML1M_GENRES)
            for genre in filter(None, genres.strip().split("|")):
                if genre not in names:
                    raise files.malformed("movies.dat", number, line, f"unknown genre {genre!r}")
                multi_hot[names[genre]] = 1.0
            if not mid.isdigit():
                raise files.malformed("movies.dat", number, line, "expected a numeric MovieID")
            items.append((int(mid), title, _title_year(title), multi_hot))
    items.sort(key=lambda row: row[0])
    return [i[0] for i in items], [i[1] for i in items], [i[2] for i in items], [i[3] for i in items]


def _read_ratings(
    files: _Files, users: dict[int, int], items: dict[int, int]
) -> tuple[list[int], list[int], list[float], list[int]]:
    file, sep = _FILES[files.name][0], ("\t" if files.name == "ml-100k" else "::")
    layout = "user id\titem id\trating\ttimestamp" if sep == "\t" else "UserID::MovieID::Rating::Timestamp"
    user_file, item_file = _FILES[files.name][1:]
    who: list[int] = []
    what: list[int] = []
    stars: list[float] = []
    when: list[int] = []
    for number, line, (uid, iid, rating, timestamp) in files.rows(file, sep, 4, layout):
        try:
            u, i, r, t = users.get(int(uid)), items.get(int(iid)), float(rating), int(timestamp)
        except ValueError:
            raise files.malformed(file, number, line, f"expected integers and a number ({layout})") from None
        if u is None or i is None:
            missing = f"user {uid} is not in {user_file}" if u is None else f"item {iid} is not in {item_file}"
            raise files.malformed(file, number, line, missing)
        who.append(u)
        what.append(i)
        stars.append(r)
        when.append(t)
    return who, what, stars, when


def load_movielens(name: MovieLensName, root: Path | str | None = None) -> MovieLens:
    """MovieLens 100K or 1M from the publisher's files.

    Args:
        name: ``"ml-100k"`` or ``"ml-1m"``.
        root: a folder holding the folder ``<name>/`` or the zip ``<name>.zip`` (read in place, not extracted);
            also accepted: the ``<name>/`` folder or the zip itself. Default: the cache folder
            ``dataset_dir(name)`` (``fastadapt data download NAME`` / ``fastadapt data import NAME PATH``).

    Returns:
        The ratings in file order, with users and items indexed by ascending original id.

    Raises:
        DataError: a file is missing (the message says how to get it), or a line is malformed (the message
            names the file and line number).
    """
    if name not in _FILES:
        raise ValueError(f"unknown MovieLens dataset {name!r}; choose one of {sorted(_FILES)}")
    files = _locate(name, Path(root) if root is not None else dataset_dir(name))
    user_ids, user_features, n_occupations = _read_users(files)
    item_ids, titles, years, genres = _read_items(files)
    users = _index(user_ids, files, _FILES[name][1])
    items = _index(item_ids, files, _FILES[name][2])
    who, what, stars, when = _read_ratings(files, users, items)
    features = np.array(user_features, dtype=np.int64).reshape(-1, 4)  # (n_users, 4)
    genre_names = ML100K_GENRES if name == "ml-100k" else ML1M_GENRES
    return MovieLens(
        name=name,
        user=np.array(who, dtype=np.int64),
        item=np.array(what, dtype=np.int64),
        rating=np.array(stars, dtype=np.float32),
        timestamp=np.array(when, dtype=np.int64),
        user_ids=np.array(user_ids, dtype=np.int64),
        gender=features[:, 0].copy(),
        age=features[:, 1].copy(),
        occupation=features[:, 2].copy(),
        zip_prefix=features[:, 3].copy(),
        item_ids=np.array(item_ids, dtype=np.int64),
        titles=titles,
        year=np.array(years, dtype=np.int64),
        genres=np.array(genres, dtype=np.float32).reshape(-1, len(genre_names)),
        genre_names=genre_names,
        occupations=n_occupations,
    )
