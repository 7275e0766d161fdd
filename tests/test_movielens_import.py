"""``fastadapt data import`` of MovieLens as the publisher's zip, the extracted folder, or another zip of the same
files, verified file by file. Generated files cannot match the real checksums, so each test registers a dataset
whose per-file table (the registry's, with the same files known and unknown) holds the generated files' sha256."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fastadapt.data import REGISTRY, ChecksumError, DataError, Dataset, dataset_dir, import_files, status, verify
from fastadapt.data_cli import data
from fastadapt.recsys import load_movielens, write_synthetic_movielens
from fastadapt.recsys._movielens import _FILES

HEX64 = re.compile("[0-9a-f]{64}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generated(tmp_path: Path, name: str) -> tuple[Path, Dataset]:
    """Synthetic files in ``tmp_path/src/<name>/`` plus a README and a stray file, and ``name`` registered with
    the generated files' sha256 wherever the real table has a checksum."""
    folder = write_synthetic_movielens(tmp_path / "src", name, n_users=20, n_items=150)  # type: ignore[arg-type]
    (folder / "README").write_text("SUMMARY & USAGE LICENSE\n")
    (folder / "notes.txt").write_text("mine\n")
    remote = REGISTRY[name].files[0]
    members = tuple(dataclasses.replace(m, sha256=sha256(folder / m.name)) if m.sha256 else m for m in remote.members)
    return folder, dataclasses.replace(REGISTRY[name], files=(dataclasses.replace(remote, members=members),))


def rezip(folder: Path, dest: Path, prefix: str) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in sorted(folder.iterdir()):
            archive.write(f, prefix + f.name)
        archive.writestr(f"__MACOSX/{prefix}._u.data", b"resource fork")  # what macOS adds
    return dest


def snapshot(folder: Path) -> dict[str, str]:
    return {f.name: sha256(f) for f in sorted(folder.iterdir())}


def assert_loads_as(name: str, folder: Path) -> None:
    cached, original = load_movielens(name), load_movielens(name, folder)  # type: ignore[arg-type]
    for key in ("user", "item", "rating", "timestamp", "gender", "age", "occupation", "genres"):
        np.testing.assert_array_equal(getattr(cached, key), getattr(original, key))
    assert cached.titles == original.titles


def test_the_registry_tables_name_the_loaders_files() -> None:
    for name, files in _FILES.items():
        (remote,) = REGISTRY[name].files
        assert {m.name for m in remote.members if m.required} == set(files)
        assert len({m.name for m in remote.members}) == len(remote.members)
        assert all(m.sha256 is None or HEX64.fullmatch(m.sha256) for m in remote.members)
    known = {n: [m.name for m in REGISTRY[n].files[0].members if m.sha256] for n in _FILES}
    assert known == {
        "ml-100k": ["u.data", "u.user", "u.item"],
        "ml-1m": ["ratings.dat", "users.dat", "movies.dat", "README"],
    }


@pytest.mark.parametrize("parent", [False, True])
def test_the_extracted_folder_is_verified_file_by_file(tmp_path: Path, parent: bool) -> None:
    folder, dataset = generated(tmp_path, "ml-100k")
    before = snapshot(folder)
    (report,) = import_files(dataset, folder.parent if parent else folder)
    assert report.path == dataset_dir("ml-100k") / "ml-100k.zip"
    assert report.detail.startswith(f"imported from {folder}: its 3 files u.data, u.user, u.item match their")
    assert (
        "no published checksum of their own or not the published file): README, u.genre, u.occupation" in report.detail
    )
    assert "ignored (not files of the dataset): notes.txt" in report.detail
    with zipfile.ZipFile(report.path) as archive:
        assert sorted(archive.namelist()) == ["ml-100k/u.data", "ml-100k/u.item", "ml-100k/u.user"]
    assert status(dataset) == "downloaded"
    (checked,) = verify(dataset)
    assert "match their published checksums" in checked.detail
    assert_loads_as("ml-100k", folder)
    assert snapshot(folder) == before  # the source is only read


@pytest.mark.parametrize("prefix", ["ml-100k/", "", "download/ml-100k/"])
def test_a_zip_of_the_same_files_with_or_without_the_top_folder(tmp_path: Path, prefix: str) -> None:
    folder, dataset = generated(tmp_path, "ml-100k")
    archive = rezip(folder, tmp_path / "Archive.zip", prefix)  # not the publisher's name: found by its files
    before = sha256(archive)
    (report,) = import_files(dataset, archive)
    assert report.detail.startswith(f"imported from {archive}{':' + prefix if prefix else ''}: its 3 files")
    assert status(dataset) == "downloaded"
    assert_loads_as("ml-100k", folder)
    assert sha256(archive) == before


@pytest.mark.parametrize("form", ["folder", "zip"])
def test_a_corrupted_file_is_named_and_nothing_is_imported(tmp_path: Path, form: str) -> None:
    folder, dataset = generated(tmp_path, "ml-100k")
    lines = (folder / "u.data").read_text().splitlines()
    lines[3] = lines[3][:-1] + ("1" if lines[3][-1] != "1" else "2")
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    source = folder if form == "folder" else rezip(folder, tmp_path / "ml-100k.zip", "ml-100k/")
    with pytest.raises(ChecksumError) as error:
        import_files(dataset, source)
    expected = dataset.files[0].members[0].sha256
    message = str(error.value)
    assert f"ml-100k: u.data differs from the published file (sha256 {sha256(folder / 'u.data')}, expected " in message
    assert f"expected {expected})" in message
    assert "u.user" not in message and "u.item" not in message  # those match
    assert "Extract the publisher's ml-100k.zip again" in message
    assert not (dataset_dir("ml-100k") / "ml-100k.zip").exists()


def test_a_damaged_zip_is_named_and_nothing_is_imported(tmp_path: Path) -> None:
    folder, dataset = generated(tmp_path, "ml-100k")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for name in ("u.data", "u.user", "u.item"):
            z.write(folder / name, f"ml-100k/{name}")
    content = bytearray(archive.read_bytes())
    start = content.index((folder / "u.data").read_bytes()[:50])
    content[start + 10] ^= 0x01  # a bit flipped in u.data: its CRC no longer matches
    archive.write_bytes(bytes(content))
    with pytest.raises(
        ChecksumError, match=rf"ml-100k: u\.data cannot be read from {re.escape(str(archive))}:ml-100k/"
    ):
        import_files(dataset, archive)
    assert not dataset_dir("ml-100k").exists()


def test_a_missing_file_is_named_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, dataset = generated(tmp_path, "ml-100k")
    (folder / "u.item").unlink()
    monkeypatch.setitem(REGISTRY, "ml-100k", dataset)
    result = CliRunner().invoke(data, ["import", "ml-100k", str(folder)])
    assert result.exit_code == 2
    assert f"error: ml-100k: u.item is missing from {folder}. " in result.stderr
    result = CliRunner().invoke(data, ["import", "ml-100k", str(tmp_path)])  # holds no file of ml-100k
    assert result.exit_code == 2 and "ml-100k/ or a folder holding u.data, u.user, u.item" in result.stderr


def test_a_failed_import_leaves_the_verified_copy(tmp_path: Path) -> None:
    folder, dataset = generated(tmp_path, "ml-100k")
    (report,) = import_files(dataset, folder)
    cached = sha256(report.path)
    (folder / "u.user").write_bytes(b"1|24|M|technician|85711\n")
    with pytest.raises(ChecksumError, match=r"ml-100k: u\.user differs from the published file"):
        import_files(dataset, folder)
    assert sha256(report.path) == cached and status(dataset) == "downloaded"


def test_the_publishers_zip_in_the_cache_is_kept(tmp_path: Path) -> None:
    folder, dataset = generated(tmp_path, "ml-100k")
    publisher = rezip(folder, tmp_path / "ml-100k.zip", "ml-100k/")
    remote = dataclasses.replace(dataset.files[0], bytes=None, md5=None, sha256=sha256(publisher))
    dataset = dataclasses.replace(dataset, files=(remote,))
    (report,) = import_files(dataset, publisher)
    assert report.detail.startswith(f"imported from {publisher}: sha256 {remote.sha256} matches the publisher's")
    (report,) = import_files(dataset, folder)  # holds fewer files than the publisher's zip
    assert "kept the publisher's ml-100k.zip already in the cache" in report.detail
    assert sha256(report.path) == remote.sha256 and status(dataset) == "downloaded"


def test_a_cached_zip_holding_unverifiable_files_fails_verify(tmp_path: Path) -> None:
    folder, dataset = generated(tmp_path, "ml-100k")
    dataset_dir("ml-100k").mkdir(parents=True)
    rezip(folder, dataset_dir("ml-100k") / "ml-100k.zip", "ml-100k/")  # put there by hand, u.occupation and all
    with pytest.raises(ChecksumError) as error:
        verify(dataset)
    assert "holds files with no published checksum of their own (README, u.genre, u.occupation)" in str(error.value)
    assert "`fastadapt data import ml-100k PATH` keeps only the files it can verify" in str(error.value)


def test_ml1m_imports_file_by_file_and_a_required_file_without_a_checksum_only_as_the_publishers_zip(
    tmp_path: Path,
) -> None:
    folder, dataset = generated(tmp_path, "ml-1m")
    (report,) = import_files(dataset, rezip(folder, tmp_path / "mine.zip", ""))  # a re-zip without the top folder
    assert "ratings.dat, users.dat, movies.dat" in report.detail
    assert_loads_as("ml-1m", folder)
    # Were users.dat's checksum unknown, only the publisher's own zip could be trusted.
    remote = dataset.files[0]
    unknown = tuple(dataclasses.replace(m, sha256=None) if m.name == "users.dat" else m for m in remote.members)
    dataset = dataclasses.replace(dataset, files=(dataclasses.replace(remote, members=unknown),))
    with pytest.raises(ChecksumError) as error:
        import_files(dataset, folder)
    message = str(error.value)
    assert f"ml-1m: users.dat has no published checksum of its own, so {folder} cannot be verified" in message
    assert "differs" not in message and "ratings.dat" not in message  # the files with checksums match
    assert f"Import the publisher's ml-1m.zip itself ({REGISTRY['ml-1m'].files[0].url}; " in message
    publisher = rezip(folder, tmp_path / "download.zip", "ml-1m/")
    remote = dataclasses.replace(dataset.files[0], md5=hashlib.md5(publisher.read_bytes()).hexdigest())
    dataset = dataclasses.replace(dataset, files=(remote,))
    (report,) = import_files(dataset, publisher)  # by its checksum, whatever its name
    assert f"md5 {remote.md5} matches the publisher's" in report.detail
    assert_loads_as("ml-1m", folder)
    with pytest.raises(DataError, match=r"ml-1m: users\.dat has no published checksum"):
        import_files(dataset, rezip(folder, tmp_path / "again.zip", ""))


def test_a_stray_readme_beside_the_extracted_folder_does_not_hide_it(tmp_path: Path) -> None:
    """``~/Downloads`` holding some README and the complete ``ml-1m/``: the import finds ``ml-1m/``; an edited
    README (optional) is left out instead of blocking the data."""
    folder, dataset = generated(tmp_path, "ml-1m")
    (folder.parent / "README").write_text("my notes\n")  # not the dataset's
    (folder / "README").write_text("SUMMARY & USAGE LICENSE, edited\n")  # differs from the table's checksum
    (report,) = import_files(dataset, folder.parent)
    assert "ratings.dat, users.dat, movies.dat" in report.detail and "README" in report.detail
    assert_loads_as("ml-1m", folder)
