"""MovieLens loaders against the GroupLens formats: synthetic files of both formats, hand-written files with
every parsing case, folder and zip, and the errors for missing files and malformed lines."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastadapt.data import DataError, dataset_dir
from fastadapt.recsys import AGE_GROUPS, ML1M_GENRES, ML100K_GENRES, load_movielens, write_synthetic_movielens

N_USERS, N_ITEMS = 200, 300
_RATINGS = {"ml-100k": ("u.data", "\t"), "ml-1m": ("ratings.dat", "::")}


def _zip(folder: Path, dest: Path) -> Path:
    """The publisher's layout: ``<name>.zip`` holding ``<name>/<file>``."""
    with zipfile.ZipFile(dest, "w") as archive:
        for f in sorted(folder.iterdir()):
            archive.write(f, f"{folder.name}/{f.name}")
    return dest


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m"])
def test_synthetic_files_load_with_their_counts_and_ranges(tmp_path: Path, fmt: str) -> None:
    folder = write_synthetic_movielens(tmp_path, fmt, n_users=N_USERS, n_items=N_ITEMS, seed=3)  # type: ignore[arg-type]
    assert folder == tmp_path / fmt
    data = load_movielens(fmt, tmp_path)  # type: ignore[arg-type]
    file, sep = _RATINGS[fmt]
    lines = (folder / file).read_text(encoding="latin-1").splitlines()
    assert (data.n_users, data.n_items, data.n_ratings) == (N_USERS, N_ITEMS, len(lines))
    # Ratings keep the file's order and map back to the original ids.
    for r in (0, len(lines) // 2, len(lines) - 1):
        uid, iid, rating, ts = lines[r].split(sep)
        assert data.user_ids[data.user[r]] == int(uid) and data.item_ids[data.item[r]] == int(iid)
        assert data.rating[r] == float(rating) and data.timestamp[r] == int(ts)
    assert data.user.dtype == np.int64 and data.rating.dtype == np.float32 and data.genres.dtype == np.float32
    assert set(np.unique(data.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.0 < data.rating.mean() < 4.2
    counts = np.bincount(data.user, minlength=N_USERS)
    assert counts.min() >= 15 and counts.max() <= 150
    assert len(set(zip(data.user.tolist(), data.item.tolist(), strict=True))) == data.n_ratings  # no duplicates
    for u in range(0, N_USERS, 37):  # a user's timestamps strictly increase in the order drawn
        assert len(np.unique(data.timestamp[data.user == u])) == counts[u]
    sizes = data.feature_sizes
    assert sizes == {"gender": 2, "age": 7, "occupation": 21, "zip_prefix": 11, "genres": len(data.genre_names)}
    for name in ("gender", "age", "occupation", "zip_prefix"):
        values = getattr(data, name)
        assert values.shape == (N_USERS,) and values.min() >= 0 and values.max() < sizes[name]
    per_item = data.genres.sum(1)
    assert ((per_item >= 1) & (per_item <= 3)).all()
    # Zipf-like popularity: the top 10% of items hold a large share of the ratings.
    popularity = np.sort(np.bincount(data.item, minlength=N_ITEMS))[::-1]
    assert popularity[: N_ITEMS // 10].sum() > 0.25 * data.n_ratings
    if fmt == "ml-1m":
        assert data.genre_names == ML1M_GENRES
        assert 0.1 < (data.year >= 1998).mean() < 0.5 and data.year.max() <= 2000
    else:
        assert data.genre_names == ML100K_GENRES
        known = data.year[data.year > 0]
        assert known.max() <= 1998 and known.min() >= 1930
        assert data.titles[-1] == "unknown" and data.year[-1] == 0  # no date, no year in the title
        assert data.genres[-1].tolist() == [1.0] + [0.0] * 18


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m"])
def test_latin1_titles_round_trip(tmp_path: Path, fmt: str) -> None:
    folder = write_synthetic_movielens(tmp_path, fmt, n_users=20, n_items=150)  # type: ignore[arg-type]
    raw = (folder / ("u.item" if fmt == "ml-100k" else "movies.dat")).read_bytes()
    assert b"Caf\xe9 Lumi\xe8re" in raw and b"\xc3\xa9" not in raw  # Latin-1, not UTF-8
    data = load_movielens(fmt, tmp_path)  # type: ignore[arg-type]
    assert data.titles[0] == f"Café Lumière ({data.year[0]})"
    assert data.titles[1].startswith("Misérables, Les (") and data.titles[2].startswith("Garçon, Le (")


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = write_synthetic_movielens(tmp_path / "a", "ml-1m", n_users=30, n_items=150, seed=5)
    b = write_synthetic_movielens(tmp_path / "b", "ml-1m", n_users=30, n_items=150, seed=5)
    c = write_synthetic_movielens(tmp_path / "c", "ml-1m", n_users=30, n_items=150, seed=6)
    for name in ("ratings.dat", "users.dat", "movies.dat"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "ratings.dat").read_bytes() != (c / "ratings.dat").read_bytes()


def _hand_written_100k(root: Path) -> Path:
    folder = root / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.user").write_text(
        "2|56|F|writer|T8H1N\n1|17|M|student|85711\n3|24|M|other|\n4|25|F|artist|02139\n", encoding="latin-1"
    )
    flags = ["0"] * 19
    action_comedy = flags.copy()
    action_comedy[1] = action_comedy[5] = "1"
    unknown = ["1", *flags[1:]]
    (folder / "u.item").write_bytes(
        (
            f"10|Misérables, Les (1994)|01-Jan-1995||http://x|{'|'.join(action_comedy)}\n"
            f"20|Old Film (1993)|||http://x|{'|'.join(flags)}\n"
            f"30|unknown|||http://x|{'|'.join(unknown)}\n"
        ).encode("latin-1")
    )
    (folder / "u.data").write_text("1\t10\t4\t880000000\n2\t30\t1\t880000001\n\n4\t20\t5\t880000002\n")
    return folder


def test_ml100k_fields_are_parsed(tmp_path: Path) -> None:
    _hand_written_100k(tmp_path)
    data = load_movielens("ml-100k", tmp_path)  # no u.genre, no u.occupation: not needed
    assert data.user_ids.tolist() == [1, 2, 3, 4] and data.item_ids.tolist() == [10, 20, 30]
    assert data.gender.tolist() == [0, 1, 0, 1]
    assert data.age.tolist() == [0, 6, 1, 2]  # 17 -> under 18, 56 -> 56+, 24 -> 18-24, 25 -> 25-34
    assert data.occupation.tolist() == [18, 20, 13, 1]  # student, writer, other, artist
    assert data.zip_prefix.tolist() == [8, 10, 10, 0]  # "T8H1N" and "" are not numeric
    assert data.year.tolist() == [1995, 1993, 0]  # release date first, then the title, else unknown
    assert data.titles == ["Misérables, Les (1994)", "Old Film (1993)", "unknown"]
    assert np.flatnonzero(data.genres[0]).tolist() == [1, 5]
    assert data.genres[2].tolist() == [1.0] + [0.0] * 18
    assert data.user.tolist() == [0, 1, 3] and data.item.tolist() == [0, 2, 1]
    assert data.rating.tolist() == [4.0, 1.0, 5.0] and data.timestamp.tolist() == [880000000, 880000001, 880000002]


def test_ml1m_fields_are_parsed(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    users = [f"{i + 1}::{'MF'[i % 2]}::{age}::{i * 3}::{zip_code}" for i, (age, zip_code) in enumerate(
        zip(AGE_GROUPS, ["48067", "70072", "55117", "E2A4H", "95370", "04092", "60614-1234"], strict=True)
    )]  # fmt: skip
    (folder / "users.dat").write_text("\n".join(users) + "\n")
    (folder / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Misérables, Les (1998)::Drama|Musical\n".encode("latin-1")
    )
    (folder / "ratings.dat").write_text("1::2::5::978300760\n7::1::3::978302109\n")
    data = load_movielens("ml-1m", tmp_path)
    assert data.age.tolist() == list(range(7)) and data.occupation.tolist() == [0, 3, 6, 9, 12, 15, 18]
    assert data.gender.tolist() == [0, 1, 0, 1, 0, 1, 0] and data.zip_prefix.tolist() == [4, 7, 5, 10, 9, 0, 6]
    assert data.year.tolist() == [1995, 1998] and data.titles[1] == "Misérables, Les (1998)"
    assert [[data.genre_names[g] for g in np.flatnonzero(row)] for row in data.genres] == [
        ["Animation", "Children's", "Comedy"],
        ["Drama", "Musical"],
    ]
    assert data.user.tolist() == [0, 6] and data.item.tolist() == [1, 0] and data.rating.tolist() == [5.0, 3.0]


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m"])
def test_zip_and_folder_load_the_same(tmp_path: Path, fmt: str) -> None:
    folder = write_synthetic_movielens(tmp_path / "folder", fmt, n_users=20, n_items=150)  # type: ignore[arg-type]
    (tmp_path / "zipped").mkdir()
    archive = _zip(folder, tmp_path / "zipped" / f"{fmt}.zip")
    reference = load_movielens(fmt, tmp_path / "folder")  # type: ignore[arg-type]
    for root in (tmp_path / "zipped", archive, folder):  # the parent of the zip, the zip, the folder itself
        data = load_movielens(fmt, root)  # type: ignore[arg-type]
        for field in ("user", "item", "rating", "timestamp", "age", "zip_prefix", "year", "genres"):
            np.testing.assert_array_equal(getattr(data, field), getattr(reference, field))
        assert data.titles == reference.titles


def test_default_root_is_the_cache_folder(tmp_path: Path) -> None:
    folder = write_synthetic_movielens(tmp_path, "ml-1m", n_users=20, n_items=150)
    cache = dataset_dir("ml-1m")  # under the test's isolated $FASTADAPT_DATA
    cache.mkdir(parents=True)
    _zip(folder, cache / "ml-1m.zip")  # where `fastadapt data download ml-1m` puts it
    assert load_movielens("ml-1m").n_users == 20


def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_movielens("ml-100k", tmp_path)
    message = str(error.value)
    assert f"no ml-100k files in {tmp_path}" in message
    for part in (
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "`fastadapt data download ml-100k`",
        "`fastadapt data import ml-100k PATH`",
    ):
        assert part in message
    folder = write_synthetic_movielens(tmp_path, "ml-1m", n_users=20, n_items=150)
    (folder / "movies.dat").unlink()
    expected = f"{folder / 'movies.dat'} is missing: ml-1m needs ratings.dat, users.dat, movies.dat. Download ml-1m.zip"
    with pytest.raises(DataError, match=re.escape(expected)) as error:
        load_movielens("ml-1m", tmp_path)
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in str(error.value)
    assert "`fastadapt data import ml-1m PATH`" in str(error.value)


def test_optional_ml100k_files_may_be_absent(tmp_path: Path) -> None:
    folder = write_synthetic_movielens(tmp_path, "ml-100k", n_users=20, n_items=150)
    full = load_movielens("ml-100k", tmp_path)
    (folder / "u.genre").unlink()
    (folder / "u.occupation").unlink()
    bare = load_movielens("ml-100k", tmp_path)
    np.testing.assert_array_equal(bare.occupation, full.occupation)
    np.testing.assert_array_equal(bare.genres, full.genres)


def _corrupt(path: Path, line: int, text: str) -> None:
    lines = path.read_bytes().decode("latin-1").splitlines()
    lines[line - 1] = text
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))


@pytest.mark.parametrize(
    ("fmt", "file", "line", "text", "problem"),
    [
        ("ml-1m", "ratings.dat", 5, "1::2::x::978300760", "expected integers and a number"),
        ("ml-1m", "ratings.dat", 7, "1::2::5", "3 fields where UserID::MovieID::Rating::Timestamp has 4"),
        ("ml-1m", "ratings.dat", 2, "999::1::5::978300760", "user 999 is not in users.dat"),
        ("ml-1m", "users.dat", 3, "3::F::30::1::12345", "expected id::M or F::(1, 18, 25, 35, 45, 50, 56)"),
        ("ml-1m", "movies.dat", 4, "4::Some Film (1999)::Drama|Opera", "unknown genre 'Opera'"),
        ("ml-100k", "u.data", 9, "1\t2\t3", "3 fields where user id\titem id\trating\ttimestamp has 4"),
        ("ml-100k", "u.user", 2, "2|30|X|writer|12345", "expected id|age|M or F|occupation|zip"),
        ("ml-100k", "u.item", 6, "6|Film (1990)|1990-01-01||url|" + "|".join("0" * 19), "expected id|title|dd-Mon"),
    ],
)
def test_malformed_lines_name_file_and_line(
    tmp_path: Path, fmt: str, file: str, line: int, text: str, problem: str
) -> None:
    folder = write_synthetic_movielens(tmp_path, fmt, n_users=20, n_items=150)  # type: ignore[arg-type]
    _corrupt(folder / file, line, text)
    with pytest.raises(DataError, match=re.escape(f"{folder / file}, line {line}: {problem}")) as error:
        load_movielens(fmt, tmp_path)  # type: ignore[arg-type]
    assert repr(text) in str(error.value)
    # In a zip, the message names the zip and the entry.
    (tmp_path / "zipped").mkdir()
    archive = _zip(folder, tmp_path / "zipped" / f"{fmt}.zip")
    with pytest.raises(DataError, match=re.escape(f"{archive}:{fmt}/{file}, line {line}: {problem}")):
        load_movielens(fmt, tmp_path / "zipped")  # type: ignore[arg-type]


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("unknown MovieLens dataset 'ml-20m'; choose one of")):
        load_movielens("ml-20m", tmp_path)  # type: ignore[arg-type]
