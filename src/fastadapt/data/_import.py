"""Import dataset files obtained by hand (a browser download, a copy from a colleague, an extracted folder)
into the cache, verifying each against the registry first.

A zip whose files have published checksums of their own (MovieLens) is also accepted as its extracted folder
or as another zip of the same files: each file is verified on its own and only the verified files are packed
into the cache (``_members.py``). The source is only ever read; a copy in the cache is replaced only by a
fully verified one, and the publisher's own zip there is never replaced by a repacked one.
"""

from __future__ import annotations

import contextlib
import shutil
import zipfile
from pathlib import Path

from ._download import (
    FileReport,
    _atomic,
    _checksums,
    _describe,
    _matches,
    _record,
    content_digest,
    verify_file,
)
from ._members import BROKEN_ZIP, check_members, locate_members, pack_members
from ._registry import ChecksumError, DataError, Dataset, RemoteFile, dataset_dir, get_dataset


def _identify(dataset: Dataset, path: Path) -> RemoteFile:
    """Which file of ``dataset`` the file at ``path`` is: by name, else by checksum, else by content."""
    for remote in dataset.files:
        if remote.name == path.name:
            return remote
    size, got = path.stat().st_size, _checksums(path)
    for remote in dataset.files:
        if _matches(remote, size, got):
            return remote
    if zipfile.is_zipfile(path):
        for remote in dataset.files:
            with contextlib.suppress(*BROKEN_ZIP):  # a damaged zip matches nothing
                if remote.content_sha256 and content_digest(path, remote.content_suffix)[0] == remote.content_sha256:
                    return remote
    for remote in dataset.files:
        if remote.members and locate_members(remote, path) is not None:
            return remote
    raise ChecksumError(
        f"{path} is none of the files of {dataset.name}: expected one of "
        + "; ".join(f"{f.name} ({f.expected()})" for f in dataset.files)
        + f"; got {_describe(size, got)}. Check that you downloaded the right file"
    )


def _pack(folder: Path, dest: Path, suffix: str) -> None:
    """Zips the ``suffix`` files of ``folder`` (names relative to its parent, as in the publisher's zip)."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.name.lower().endswith(suffix.lower()))
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as archive:
        for f in files:
            info = zipfile.ZipInfo(f.relative_to(folder.parent).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, f.read_bytes())


def _is_published(remote: RemoteFile, path: Path) -> bool:
    return path.is_file() and _matches(remote, path.stat().st_size, _checksums(path))


def _import_members(dataset: Dataset, remote: RemoteFile, source: Path, directory: Path) -> FileReport:
    """Verifies the files in the folder or zip ``source`` one by one and packs those verified into the cache."""
    dest = directory / remote.name
    tree = locate_members(remote, source)
    required = [m.name for m in remote.members if m.required]
    if tree is None:
        raise ChecksumError(
            f"{source} is neither {remote.name} as published ({remote.expected()}) nor a folder or zip holding its "
            f"files ({', '.join(required)}). Get the publisher's file from {remote.url} with `fastadapt data "
            f"download {dataset.name}`, or by hand and then `fastadapt data import {dataset.name} PATH`"
        )
    check = check_members(remote, tree, dataset.name)
    if not check.ok:
        raise ChecksumError(f"{'; '.join(check.problems)}. {check.advice(remote)}")
    if _is_published(remote, dest):  # it holds these files and more: keep it
        algo, value = next(iter(remote.checksums().items()))
        _record(directory, remote, f"{algo} {value} matches the publisher's")
        detail = f"{check.summary()}; kept the publisher's {remote.name} already in the cache ({algo} matches)"
    else:
        with _atomic(dest) as tmp:
            pack_members(remote, tree, check.verified, tmp, dataset.name)
        _record(directory, remote, f"packed from {tree.where()}: {check.summary()}")
        detail = f"{check.summary()}; packed into the cache"
    return FileReport(remote.name, dest, f"imported from {tree.where()}: {detail}")


def _import_one(dataset: Dataset, remote: RemoteFile, source: Path, directory: Path) -> FileReport:
    dest = directory / remote.name
    if remote.members and not _is_published(remote, source):
        return _import_members(dataset, remote, source, directory)
    if source.is_file():
        detail = verify_file(remote, source, dataset.name)
        with _atomic(dest) as tmp:
            shutil.copyfile(source, tmp)
    else:
        assert remote.content_sha256 is not None  # only such files are looked for as folders
        digest, count = content_digest(source, remote.content_suffix)
        if digest != remote.content_sha256:
            raise ChecksumError(
                f"folder {source} is not the content of {remote.name}: expected content digest "
                f"{remote.content_sha256}; got {digest} over {count:,} {remote.content_suffix} files. Extract the "
                f"publisher's zip ({remote.url}) again, or import the zip itself"
            )
        detail = f"packed from folder {source}; content digest of its {count:,} {remote.content_suffix} files matches"
        with _atomic(dest) as tmp:
            _pack(source, tmp, remote.content_suffix)
    _record(directory, remote, detail)
    return FileReport(remote.name, dest, f"imported from {source}: {detail}")


def import_files(name: str | Dataset, path: Path | str, cache_dir: Path | str | None = None) -> list[FileReport]:
    """Registers files obtained by hand: a file of the dataset (a zip, under any name), a folder holding such
    files, or a folder extracted from one of its zips (verified by content digest and zipped again). Where the
    files inside a zip have published checksums of their own (MovieLens), the extracted folder or any zip of
    those files (with or without the top folder) is verified file by file and the verified files are packed.

    Raises:
        DataError: ``path`` holds none of the dataset's files.
        ChecksumError: a file or folder does not match the published one.
    """
    dataset = get_dataset(name)
    source = Path(path).expanduser()
    directory = dataset_dir(dataset, cache_dir)
    if source.is_file():
        return [_import_one(dataset, _identify(dataset, source), source, directory)]
    if not source.is_dir():
        raise DataError(f"{source} does not exist; give the path of a downloaded file or an extracted folder")
    found: list[tuple[RemoteFile, Path]] = []
    for remote in dataset.files:
        folders = [source, source / remote.stem] if remote.content_sha256 else []
        if (source / remote.name).is_file():
            found.append((remote, source / remote.name))
        elif match := next((f for f in folders if f.name == remote.stem and f.is_dir()), None):
            found.append((remote, match))
        elif remote.members and locate_members(remote, source) is not None:
            found.append((remote, source))
    if not found:
        wanted = [f.name for f in dataset.files] + [f"{f.stem}/" for f in dataset.files if f.content_sha256]
        wanted += [
            f"{f.stem}/ or a folder holding {', '.join(m.name for m in f.members if m.required)}"
            for f in dataset.files
            if f.members
        ]
        raise DataError(f"{source} holds none of the files of {dataset.name}; looked for {wanted}")
    return [_import_one(dataset, remote, src, directory) for remote, src in found]
