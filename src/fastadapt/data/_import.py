"""Import dataset files obtained by hand (a browser download, a copy from a colleague, an extracted folder)
into the cache, verifying each against the registry first."""

from __future__ import annotations

import contextlib
import shutil
import zipfile
from pathlib import Path

from ._download import (
    _BROKEN_ZIP,
    ChecksumError,
    FileReport,
    _atomic,
    _checksums,
    _describe,
    _matches,
    _record,
    content_digest,
    verify_file,
)
from ._registry import DataError, Dataset, RemoteFile, dataset_dir, get_dataset


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
            with contextlib.suppress(*_BROKEN_ZIP):  # a damaged zip matches nothing
                if remote.content_sha256 and content_digest(path, remote.content_suffix)[0] == remote.content_sha256:
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


def _import_one(dataset: Dataset, remote: RemoteFile, source: Path, directory: Path) -> FileReport:
    dest = directory / remote.name
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
    files, or a folder extracted from one of its zips (verified by content digest and zipped again).

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
    if not found:
        wanted = [f.name for f in dataset.files] + [f"{f.stem}/" for f in dataset.files if f.content_sha256]
        raise DataError(f"{source} holds none of the files of {dataset.name}; looked for {wanted}")
    return [_import_one(dataset, remote, src, directory) for remote, src in found]
