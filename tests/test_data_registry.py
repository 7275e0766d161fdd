"""The dataset registry, the cache directory, verification, importing files obtained by hand, and the
``fastadapt data`` commands."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastadapt.data import (
    DATA_ENV,
    REGISTRY,
    ChecksumError,
    DataError,
    Dataset,
    RemoteFile,
    content_digest,
    data_home,
    dataset_dir,
    get_dataset,
    import_files,
    status,
    verify,
    verify_file,
)
from fastadapt.data_cli import data

OMNIGLOT = REGISTRY["omniglot"]
SMALL = REGISTRY["omniglot-small"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(data, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_registry_entries_are_well_formed() -> None:
    for name, dataset in REGISTRY.items():
        assert dataset.name == name
        assert dataset.license and dataset.summary and dataset.files
        assert len({f.name for f in dataset.files}) == len(dataset.files)
        for f in dataset.files:
            assert all(url.startswith("https://") and url.endswith(f.name) for url in f.urls)
            assert f.md5 is None or re.fullmatch("[0-9a-f]{32}", f.md5)
            for digest in (f.sha256, f.content_sha256):
                assert digest is None or re.fullmatch("[0-9a-f]{64}", digest)
    assert OMNIGLOT.bytes == 9_464_212 + 6_462_886
    assert REGISTRY["ml-1m"].bytes is None  # its size is not published


def test_cache_directory_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert data_home() == tmp_path / "cache"
    assert dataset_dir("omniglot") == tmp_path / "cache" / "omniglot"
    assert dataset_dir("omniglot", tmp_path / "x") == tmp_path / "x" / "omniglot"
    monkeypatch.delenv(DATA_ENV)
    assert data_home() == Path.home() / ".cache" / "fastadapt"


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'omniglott'.*'omniglot'"):
        get_dataset("omniglott")
    code, _, err = run("verify", "omniglott")
    assert code == 2 and "fastadapt data list" in err


def test_content_digests_of_the_repacked_zips_match_the_registry(shared_data: Path) -> None:
    """The repacked copies differ in bytes from the publisher's zips, but not in content."""
    for remote in OMNIGLOT.files:
        path = shared_data / "omniglot" / remote.name
        digest, count = content_digest(path)
        assert digest == remote.content_sha256
        assert count == {"images_background.zip": 19_280, "images_evaluation.zip": 13_180}[remote.name]
        assert "bytes differ from the publisher's zip" in verify_file(remote, path)


def test_a_folder_and_its_zip_have_the_same_content_digest(shared_data: Path, tmp_path: Path) -> None:
    zip_path = shared_data / "omniglot" / "images_background_small1.zip"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "x")
    assert content_digest(tmp_path / "x" / "images_background_small1") == content_digest(zip_path)


def test_import_a_file_by_name_and_by_checksum(shared_data: Path, tmp_path: Path) -> None:
    small1, small2 = SMALL.files
    (report,) = import_files("omniglot-small", shared_data / "omniglot" / small1.name)
    assert report.path == dataset_dir("omniglot-small") / small1.name
    assert f"md5 {small1.md5} matches" in report.detail
    assert status("omniglot-small") == "partial (1/2 files)"
    renamed = tmp_path / "download (1).zip"
    shutil.copyfile(shared_data / "omniglot" / small2.name, renamed)
    (report,) = import_files("omniglot-small", renamed)
    assert report.name == small2.name
    assert status("omniglot-small") == "downloaded"
    assert [r.name for r in verify("omniglot-small")] == [small1.name, small2.name]


def test_import_rejects_a_wrong_file(shared_data: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "images_background.zip"
    shutil.copyfile(shared_data / "omniglot" / "images_background_small1.zip", wrong)
    with pytest.raises(ChecksumError) as error:
        import_files("omniglot", wrong)
    message = str(error.value)
    assert "expected 9,464,212 bytes, md5 68d2efa1b9178cc56df9314c21c6e718" in message
    assert "got 1,319,022 bytes" in message and "content digest" in message
    assert not dataset_dir("omniglot").exists() or not any(dataset_dir("omniglot").iterdir())
    with pytest.raises(ChecksumError, match="none of the files of omniglot-small"):
        import_files("omniglot-small", shared_data / "omniglot" / "all_runs.zip")


def test_import_a_repacked_zip_by_content(shared_data: Path) -> None:
    code, out, err = run("import", "omniglot", str(shared_data / "omniglot" / "images_background.zip"))
    assert code == 0, err
    assert "content digest of its 19,280 .png files matches" in out
    assert "omniglot: partial (1/2 files)" in out


def test_import_an_extracted_folder(shared_data: Path, tmp_path: Path) -> None:
    zip_path = shared_data / "omniglot" / "images_background_small1.zip"
    digest, _ = content_digest(zip_path)
    remote = RemoteFile(
        "images_background_small1.zip", ("https://example.org/x.zip",), md5="0" * 32, content_sha256=digest
    )
    dataset = Dataset("folder-test", "test", "MIT", "-", (remote,))
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "x")
    with pytest.raises(DataError, match=r"holds none of the files of folder-test.*images_background_small1/"):
        import_files(dataset, tmp_path)
    (report,) = import_files(dataset, tmp_path / "x")  # the parent of the extracted folder works too
    assert "packed from folder" in report.detail
    assert content_digest(report.path) == content_digest(zip_path)
    (tmp_path / "x" / "images_background_small1" / "Balinese" / "character01" / "0108_01.png").write_bytes(b"x")
    with pytest.raises(ChecksumError, match=r"is not the content of images_background_small1\.zip"):
        import_files(dataset, tmp_path / "x" / "images_background_small1")


def test_verify_reports_missing_and_changed_files(shared_data: Path) -> None:
    code, _, err = run("verify", "omniglot-small")
    assert code == 2
    assert f"expected at {dataset_dir('omniglot-small') / 'images_background_small1.zip'}" in err
    assert "fastadapt data download omniglot-small" in err
    for remote in SMALL.files:
        import_files("omniglot-small", shared_data / "omniglot" / remote.name)
    code, out, _ = run("verify", "omniglot-small")
    assert code == 0 and out.count("matches the publisher's") == 2
    path = dataset_dir("omniglot-small") / "images_background_small2.zip"
    content = bytearray(path.read_bytes())
    content[100] ^= 0xFF
    path.write_bytes(bytes(content))
    assert status("omniglot-small") == "unverified"
    code, _, err = run("verify", "omniglot-small")
    assert code == 2 and "is not images_background_small2.zip as published" in err


def test_list_shows_size_licence_and_status(shared_data: Path) -> None:
    code, out, _ = run("list")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith((" ", "cache"))}
    assert set(lines) == set(REGISTRY)
    assert "15.9 MB" in lines["omniglot"] and "not downloaded" in lines["omniglot"] and "MIT" in lines["omniglot"]
    for remote in SMALL.files:
        import_files("omniglot-small", shared_data / "omniglot" / remote.name)
    code, out, _ = run("list")
    assert re.search(r"omniglot-small\s+2\.9 MB\s+downloaded", out)
