"""Download and verify the files of a named dataset in the cache (importing by hand: ``_import.py``).

Downloads use the standard library (``urllib``) and go to a temporary file beside the destination that is
renamed into place only once its size and checksums match, so the cache never holds a partial or corrupt
file. Each verified file is recorded in ``<dataset dir>/.verified.json`` (size and modification time), so
that later loads need not hash it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from ._members import BROKEN_ZIP, check_members, locate_members
from ._registry import ChecksumError, DataError, Dataset, RemoteFile, dataset_dir, get_dataset

#: Environment variable with mirror base URLs (space or comma separated) that replace the canonical host.
MIRROR_ENV = "FASTADAPT_MIRROR"
_RECORD = ".verified.json"
_CHUNK = 1 << 20


class OfflineError(DataError):
    """No URL of a file could be reached."""


@dataclass(frozen=True)
class FileReport:
    """What happened to one file: ``detail`` says how it was obtained or verified."""

    name: str
    path: Path
    detail: str


def content_digest(path: Path, suffix: str = ".png") -> tuple[str, int]:
    """The digest of a zip's or a folder's content, independent of how the zip was packed.

    sha256 over the lines ``"<sha256 of the file>  <name>\\n"`` of every file whose name ends in ``suffix``,
    sorted by name, where the name is the zip entry's name or, for a folder, the path relative to the
    folder's parent (so ``images_background.zip`` and the ``images_background/`` folder extracted from it
    agree). For Omniglot this equals ``grep ' images_background/' manifest | sha256sum`` over a per-PNG
    ``sha256sum`` manifest sorted by path.

    Returns:
        ``(hex digest, number of files)``.
    """
    entries: list[tuple[str, str]] = []
    suffix = suffix.lower()
    if path.is_dir():
        for f in path.rglob("*"):
            if f.is_file() and f.name.lower().endswith(suffix):
                entries.append((f.relative_to(path.parent).as_posix(), hashlib.sha256(f.read_bytes()).hexdigest()))
    else:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and info.filename.lower().endswith(suffix):
                    entries.append((info.filename, hashlib.sha256(archive.read(info)).hexdigest()))
    digest = hashlib.sha256()
    for name, sha in sorted(entries):
        digest.update(f"{sha}  {name}\n".encode())
    return digest.hexdigest(), len(entries)


def _hashers() -> dict[str, hashlib._Hash]:
    return {algo: hashlib.new(algo, usedforsecurity=False) for algo in ("sha256", "md5")}


def _checksums(path: Path) -> dict[str, str]:
    hashers = _hashers()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {algo: h.hexdigest() for algo, h in hashers.items()}


def _matches(remote: RemoteFile, size: int, got: dict[str, str]) -> bool:
    if remote.bytes is not None and size != remote.bytes:
        return False
    return all(got[algo] == value for algo, value in remote.checksums().items())


def _describe(size: int, got: dict[str, str]) -> str:
    return f"{size:,} bytes, sha256 {got['sha256']}, md5 {got['md5']}"


def verify_file(remote: RemoteFile, path: Path, dataset: str = "NAME") -> str:
    """Checks ``path`` against ``remote``; returns how it matched. A zip whose bytes differ is accepted when
    its content digest matches (a repacked copy), or when each of its files matches its own published
    checksum and it holds no file of the dataset that has none (the copy ``fastadapt data import`` packs).

    Raises:
        ChecksumError: naming what was expected and what was found.
    """
    size, got = path.stat().st_size, _checksums(path)
    if _matches(remote, size, got):
        algo, value = next(iter(remote.checksums().items()))
        return f"{algo} {value} matches the publisher's"
    found = _describe(size, got)
    tree = locate_members(remote, path) if remote.members else None
    if tree is not None:
        check = check_members(remote, tree, dataset)
        if check.ok and not check.unverifiable:
            return f"bytes differ from the publisher's zip ({found}) but {check.summary()}"
        if check.ok:
            raise ChecksumError(
                f"{path} is not the publisher's {remote.name} ({found}) and holds files with no published checksum "
                f"of their own ({', '.join(check.unverifiable)}): they cannot be verified. `fastadapt data import "
                f"{dataset} PATH` keeps only the files it can verify; or run `fastadapt data download {dataset}`"
            )
        raise ChecksumError(
            f"{'; '.join(check.problems)}. {path} is not the publisher's {remote.name} either (expected "
            f"{remote.expected()}; got {found}). {check.advice(remote)}"
        )
    if remote.content_sha256 is not None and zipfile.is_zipfile(path):
        try:
            digest, count = content_digest(path, remote.content_suffix)
        except BROKEN_ZIP as error:
            digest, count = f"unreadable ({error})", 0
        if digest == remote.content_sha256:
            return (
                f"bytes differ from the publisher's zip (a repacked copy: {found}) but the content digest of its "
                f"{count:,} {remote.content_suffix} files matches ({digest})"
            )
        found += f", content digest {digest} over {count:,} {remote.content_suffix} files"
    content = f", content digest {remote.content_sha256}" if remote.content_sha256 else ""
    raise ChecksumError(
        f"{path} is not {remote.name} as published: expected {remote.expected()}{content}; got {found}. "
        f"Get the publisher's file from {remote.url} with `fastadapt data download {dataset}`, or by hand and then "
        f"`fastadapt data import {dataset} PATH`"
    )


def _read_record(directory: Path) -> dict[str, dict[str, int | str]]:
    try:
        return dict(json.loads((directory / _RECORD).read_text()))
    except (OSError, ValueError):
        return {}


def _stamp(path: Path) -> dict[str, int | str]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _expectation(remote: RemoteFile) -> str:
    """What a file was verified against; a record made against other checksums no longer counts."""
    members = " ".join(f"{m.name}:{m.sha256}:{m.md5}" for m in remote.members)
    return f"{remote.expected()}, content {remote.content_sha256}" + (
        f", members {hashlib.sha256(members.encode()).hexdigest()[:16]}" if members else ""
    )


def _record(directory: Path, remote: RemoteFile, detail: str) -> None:
    record = _read_record(directory)
    record[remote.name] = _stamp(directory / remote.name) | {"expected": _expectation(remote), "detail": detail}
    with _atomic(directory / _RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))


def _is_recorded(directory: Path, remote: RemoteFile) -> bool:
    """Whether the file was verified against ``remote`` and has not changed since (same size and mtime)."""
    entry, path = _read_record(directory).get(remote.name), directory / remote.name
    if entry is None or entry.get("expected") != _expectation(remote) or not path.is_file():
        return False
    return all(entry.get(k) == v for k, v in _stamp(path).items())


def _temporary(dest: Path) -> Path:
    """A new empty file beside ``dest`` (same file system, so that ``os.replace`` is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def _atomic(dest: Path) -> Iterator[Path]:
    """A temporary path beside ``dest``, renamed onto it if the block succeeds and deleted otherwise."""
    tmp = _temporary(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def status(name: str | Dataset, cache_dir: Path | str | None = None) -> str:
    """``"downloaded"`` (all files present and verified), ``"unverified"``, ``"partial (i/n files)"`` or
    ``"not downloaded"``."""
    dataset = get_dataset(name)
    directory = dataset_dir(dataset, cache_dir)
    present = [f for f in dataset.files if (directory / f.name).is_file()]
    if not present:
        return "not downloaded"
    if len(present) < len(dataset.files):
        return f"partial ({len(present)}/{len(dataset.files)} files)"
    return "downloaded" if all(_is_recorded(directory, f) for f in present) else "unverified"


def mirrors_from_env() -> tuple[str, ...]:
    """The mirror base URLs in ``$FASTADAPT_MIRROR``."""
    return tuple(os.environ.get(MIRROR_ENV, "").replace(",", " ").split())


def candidate_urls(remote: RemoteFile, mirrors: Sequence[str] | None = None) -> tuple[str, ...]:
    """Where to fetch ``remote`` from: with mirrors (argument, else ``$FASTADAPT_MIRROR``), each mirror's base
    URL followed by the canonical URL's path (``https://github.com/a/b.zip`` -> ``<mirror>/a/b.zip``);
    without, the canonical URL and its alternatives."""
    mirrors = tuple(mirrors) if mirrors is not None else mirrors_from_env()
    if not mirrors:
        return remote.urls
    return tuple(m.rstrip("/") + urlsplit(remote.url).path for m in mirrors)


def _looks_like_html(path: Path, content_type: str) -> bool:
    with path.open("rb") as f:
        head = f.read(512).lstrip().lower()
    return "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html"))


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(getattr(error, "reason", None) or error)


def _fetch(url: str, tmp: Path, remote: RemoteFile, progress: bool, timeout: float) -> tuple[str, dict[str, str]]:
    """Streams ``url`` into ``tmp``; returns the Content-Type and the checksums of what came."""
    hashers = _hashers()
    request = urllib.request.Request(url, headers={"User-Agent": "fastadapt"})
    with urllib.request.urlopen(request, timeout=timeout) as response, tmp.open("wb") as out:
        content_type = response.headers.get("Content-Type", "")
        total = response.length or remote.bytes
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=remote.name, disable=not progress
        ) as bar:
            while chunk := response.read(_CHUNK):
                if remote.bytes is not None and out.tell() + len(chunk) > remote.bytes:
                    raise ChecksumError(
                        f"{url} sent more than the {remote.bytes:,} bytes of {remote.name}; the partial file was "
                        f"deleted. Check the URL or mirror, or download it by hand and run `fastadapt data import`"
                    )
                out.write(chunk)
                for h in hashers.values():
                    h.update(chunk)
                bar.update(len(chunk))
    return content_type, {algo: h.hexdigest() for algo, h in hashers.items()}


def download_file(
    remote: RemoteFile,
    dest: Path,
    *,
    dataset: str = "NAME",
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> str:
    """Downloads ``remote`` to ``dest`` (atomically) and returns where it came from.

    Raises:
        OfflineError: no URL could be reached; the message names the URLs and ``dest``.
        ChecksumError: what came is not the published file (or is an HTML page); nothing is left at ``dest``.
    """
    failures = []
    for url in candidate_urls(remote, mirrors):
        tmp = _temporary(dest)
        try:
            try:
                content_type, got = _fetch(url, tmp, remote, progress, timeout)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                failures.append(f"{url}: {_reason(error)}")
                if isinstance(error, urllib.error.HTTPError):
                    error.close()  # it holds the response
                continue
            size = tmp.stat().st_size
            if _looks_like_html(tmp, content_type):
                raise ChecksumError(
                    f"{url} served an HTML page ({size:,} bytes, Content-Type {content_type or 'unset'}) instead of "
                    f"{remote.name} ({remote.expected()}): a login, error or rate-limit page; it was deleted. "
                    f"Download the file in a browser and run `fastadapt data import {dataset} PATH`, or set "
                    f"{MIRROR_ENV} to a mirror"
                )
            if not _matches(remote, size, got):
                raise ChecksumError(
                    f"{url} sent a file that is not {remote.name}: expected {remote.expected()}; got "
                    f"{_describe(size, got)}. The partial file was deleted; try again, or download it by hand "
                    f"and run `fastadapt data import {dataset} PATH`"
                )
            os.replace(tmp, dest)
            return f"downloaded from {url}, {next(iter(remote.checksums()))} verified"
        finally:
            tmp.unlink(missing_ok=True)
    raise OfflineError(
        f"could not download {remote.name} ({'; '.join(failures)}). If this machine is offline or the server "
        f"refuses, fetch {remote.url} ({remote.expected()}) elsewhere and put it at {dest}, or run "
        f"`fastadapt data import {dataset} PATH` on the downloaded file or its extracted folder"
    )


def download(
    name: str | Dataset,
    *,
    cache_dir: Path | str | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    force: bool = False,
    timeout: float = 60.0,
) -> list[FileReport]:
    """Downloads the files of a dataset that are not yet in the cache, verifying each.

    Args:
        name: a registered name or a :class:`Dataset`.
        cache_dir: the cache root (default :func:`data_home`).
        mirrors: base URLs replacing the canonical host (default ``$FASTADAPT_MIRROR``).
        progress: show a tqdm progress bar.
        force: download again even if a verified copy is present.
        timeout: seconds to wait for the server.
    """
    dataset = get_dataset(name)
    directory = dataset_dir(dataset, cache_dir)
    reports = []
    for remote in dataset.files:
        dest = directory / remote.name
        if not force and _is_recorded(directory, remote):
            reports.append(FileReport(remote.name, dest, "already present and verified"))
            continue
        if not force and dest.is_file():
            with contextlib.suppress(ChecksumError):  # a corrupt copy is replaced below
                detail = verify_file(remote, dest, dataset.name)
                _record(directory, remote, detail)
                reports.append(FileReport(remote.name, dest, f"already present: {detail}"))
                continue
        detail = download_file(remote, dest, dataset=dataset.name, mirrors=mirrors, progress=progress, timeout=timeout)
        _record(directory, remote, detail)
        reports.append(FileReport(remote.name, dest, detail))
    return reports


def verify(name: str | Dataset, cache_dir: Path | str | None = None) -> list[FileReport]:
    """Hashes every file of a dataset in the cache again.

    Raises:
        DataError: a file is missing (the message says how to get it).
        ChecksumError: a file does not match.
    """
    dataset = get_dataset(name)
    directory = dataset_dir(dataset, cache_dir)
    reports = []
    for remote in dataset.files:
        path = directory / remote.name
        if not path.is_file():
            raise DataError(
                f"{remote.name} is missing: expected at {path}; run `fastadapt data download {dataset.name}`, or "
                f"fetch {remote.url} by hand and run `fastadapt data import {dataset.name} PATH`"
            )
        detail = verify_file(remote, path, dataset.name)
        _record(directory, remote, detail)
        reports.append(FileReport(remote.name, path, detail))
    return reports


def ensure_dataset(
    name: str | Dataset,
    *,
    cache_dir: Path | str | None = None,
    download_missing: bool = False,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """The directory of a dataset whose files are all present and verified (hashing only files changed since
    they were last verified); downloads missing files if ``download_missing``."""
    dataset = get_dataset(name)
    if download_missing:
        download(dataset, cache_dir=cache_dir, mirrors=mirrors, progress=progress)
    elif status(dataset, cache_dir) != "downloaded":
        verify(dataset, cache_dir)
    return dataset_dir(dataset, cache_dir)
