"""Downloads against a loopback HTTP server serving the publisher's small Omniglot zips: the happy path,
a corrupted file, an HTML page, and an unreachable host. Nothing here touches the internet."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from fastadapt.data import (
    MIRROR_ENV,
    REGISTRY,
    ChecksumError,
    Dataset,
    OfflineError,
    RemoteFile,
    candidate_urls,
    dataset_dir,
    download,
    status,
)
from fastadapt.data_cli import data

SMALL = REGISTRY["omniglot-small"]
SMALL1 = SMALL.file("images_background_small1.zip")


def publish(root: Path, remote: RemoteFile, content: bytes) -> None:
    """Puts ``content`` where a mirror of ``remote``'s canonical URL serves it."""
    path = root / urlsplit(remote.url).path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_mirror_replaces_the_canonical_host() -> None:
    assert candidate_urls(SMALL1) == SMALL1.urls
    assert candidate_urls(SMALL1, ["http://m.example/base/"]) == (
        "http://m.example/base/brendenlake/omniglot/raw/master/python/images_background_small1.zip",
    )


def test_download_verifies_records_and_skips_a_second_time(server: tuple[str, Path], shared_data: Path) -> None:
    url, root = server
    for remote in SMALL.files:
        publish(root, remote, (shared_data / "omniglot" / remote.name).read_bytes())
    reports = download("omniglot-small", mirrors=[url], progress=False)
    directory = dataset_dir("omniglot-small")
    assert [r.path for r in reports] == [directory / f.name for f in SMALL.files]
    assert all(r.detail.startswith(f"downloaded from {url}/") for r in reports)
    for remote in SMALL.files:
        assert hashlib.md5((directory / remote.name).read_bytes()).hexdigest() == remote.md5
    assert leftovers(directory) == sorted([".verified.json", *(f.name for f in SMALL.files)])
    assert status("omniglot-small") == "downloaded"
    again = download("omniglot-small", mirrors=[closed_port_url()], progress=False)
    assert {r.detail for r in again} == {"already present and verified"}


def test_cli_download_uses_the_mirror_from_the_environment(
    server: tuple[str, Path], shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    for remote in SMALL.files:
        publish(root, remote, (shared_data / "omniglot" / remote.name).read_bytes())
    monkeypatch.setenv(MIRROR_ENV, f"{closed_port_url()} {url}")  # the first mirror is down
    result = CliRunner().invoke(data, ["download", "omniglot-small"])
    assert result.exit_code == 0, result.output
    assert f"downloaded from {url}/" in result.stdout
    assert "images_background_small1.zip" in result.stderr  # the progress bar


def test_corrupted_file_is_rejected_and_deleted(server: tuple[str, Path], shared_data: Path) -> None:
    url, root = server
    content = bytearray((shared_data / "omniglot" / SMALL1.name).read_bytes())
    content[1000] ^= 0xFF
    publish(root, SMALL1, bytes(content))
    only_small1 = Dataset("small1-test", "test", "MIT", "-", (SMALL1,))
    with pytest.raises(ChecksumError) as error:
        download(only_small1, mirrors=[url], progress=False)
    message = str(error.value)
    assert f"expected 1,319,022 bytes, md5 {SMALL1.md5}" in message
    assert f"got 1,319,022 bytes, sha256 {hashlib.sha256(content).hexdigest()}" in message
    assert f"md5 {hashlib.md5(content).hexdigest()}" in message
    assert "partial file was deleted" in message
    assert leftovers(dataset_dir(only_small1)) == []


def test_an_oversized_response_is_cut_short(server: tuple[str, Path], shared_data: Path) -> None:
    url, root = server
    publish(root, SMALL1, (shared_data / "omniglot" / SMALL1.name).read_bytes() + b"\0" * 5_000_000)
    only_small1 = Dataset("small1-test", "test", "MIT", "-", (SMALL1,))
    with pytest.raises(ChecksumError, match=r"sent more than the 1,319,022 bytes"):
        download(only_small1, mirrors=[url], progress=False)
    assert leftovers(dataset_dir(only_small1)) == []


def test_an_existing_corrupt_copy_is_replaced(server: tuple[str, Path], shared_data: Path) -> None:
    url, root = server
    publish(root, SMALL1, (shared_data / "omniglot" / SMALL1.name).read_bytes())
    only_small1 = Dataset("small1-test", "test", "MIT", "-", (SMALL1,))
    dest = dataset_dir(only_small1) / SMALL1.name
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"truncated")
    (report,) = download(only_small1, mirrors=[url], progress=False)
    assert report.detail.startswith("downloaded from")
    assert hashlib.md5(dest.read_bytes()).hexdigest() == SMALL1.md5


def test_html_page_is_a_clear_error(server: tuple[str, Path]) -> None:
    url, root = server
    publish(root, SMALL1, b"\n<!DOCTYPE html><html><body>Sign in to continue</body></html>\n")
    with pytest.raises(ChecksumError, match="served an HTML page") as error:
        download("omniglot-small", mirrors=[url], progress=False)
    assert "fastadapt data import omniglot-small" in str(error.value)
    assert f"md5 {SMALL1.md5}" in str(error.value)
    assert leftovers(dataset_dir("omniglot-small")) == []


def test_unreachable_host_names_url_destination_and_import() -> None:
    mirror = closed_port_url()
    with pytest.raises(OfflineError) as error:
        download("omniglot-small", mirrors=[mirror], progress=False, timeout=5)
    message = str(error.value)
    assert f"{mirror}/brendenlake/omniglot/raw/master/python/{SMALL1.name}" in message
    assert str(dataset_dir("omniglot-small") / SMALL1.name) in message
    assert SMALL1.url in message
    assert "fastadapt data import omniglot-small PATH" in message
    assert not (dataset_dir("omniglot-small") / SMALL1.name).exists()


def test_missing_file_on_the_server_is_reported(server: tuple[str, Path]) -> None:
    url, _ = server
    with pytest.raises(OfflineError, match="HTTP 404"):
        download("omniglot-small", mirrors=[url], progress=False)


def test_cli_download_failure_exits_2_with_the_message() -> None:
    result = CliRunner().invoke(data, ["download", "omniglot-small", "--mirror", closed_port_url(), "--no-progress"])
    assert result.exit_code == 2
    assert "error: could not download images_background_small1.zip" in result.stderr
