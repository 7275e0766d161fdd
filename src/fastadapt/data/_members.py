"""Verify the files of a dataset's zip one by one, where the zip's own checksum cannot match: an extracted
folder, or a zip packed again (other bytes, the same files, with or without the top folder). Each file is
compared with its own published checksum (:class:`Member`); a file with none is never taken on trust.

``fastadapt data import`` packs the verified files into the cache as ``<stem>/<name>`` entries, the layout of
the publisher's zip; ``fastadapt data verify`` checks that copy the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ._registry import ChecksumError, Member, RemoteFile

#: What reading a damaged zip raises (bad CRC, corrupt deflate stream, truncation).
BROKEN_ZIP = (zipfile.BadZipFile, zlib.error, EOFError)
_CHUNK = 1 << 20
_MAC_METADATA = "__MACOSX/"  # what macOS's "Compress" adds beside the files


@dataclass(frozen=True)
class Tree:
    """Where a zip's files are: a folder, or a zip and the folder inside it (``prefix``, ``""`` for the top)."""

    path: Path
    prefix: str = ""

    def where(self) -> str:
        return f"{self.path}:{self.prefix}" if self.prefix else str(self.path)

    def files(self) -> set[str]:
        """The names of the files directly in the folder (not in its sub-folders)."""
        if self.path.is_dir():
            return {f.name for f in self.path.iterdir() if f.is_file()}
        with zipfile.ZipFile(self.path) as archive:
            names = (n.removeprefix(self.prefix) for n in archive.namelist() if n.startswith(self.prefix))
            return {n for n in names if n and "/" not in n}

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self.path.is_dir():
            with (self.path / name).open("rb") as f:
                yield f
        else:
            with zipfile.ZipFile(self.path) as archive, archive.open(self.prefix + name) as f:
                yield f


def locate_members(remote: RemoteFile, path: Path) -> Tree | None:
    """Where the files of ``remote`` are in ``path``: of the folder itself and its ``<stem>/`` sub-folder, the one
    holding most of the required files, then most files (the folder itself on a tie; a stray README beside a
    complete ``<stem>/`` does not win), or in a zip the folder holding most of them (the top folder ``<stem>/``
    or the zip's top on a tie); None if none."""
    known = {m.name for m in remote.members}
    required = {m.name for m in remote.members if m.required}
    if path.is_dir():
        folders = [f for f in (path, path / remote.stem) if f.is_dir() and any((f / n).is_file() for n in known)]
        if not folders:
            return None

        def held(folder: Path) -> tuple[int, int]:
            return sum((folder / n).is_file() for n in required), sum((folder / n).is_file() for n in known)

        return Tree(max(folders, key=held))  # max keeps the first of equals: the folder itself
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            entries = [i.filename for i in archive.infolist() if not i.is_dir()]
    except BROKEN_ZIP:
        return None
    prefixes: Counter[str] = Counter()
    for entry in entries:
        folder, _, name = entry.rpartition("/")
        if name in known and not entry.startswith(_MAC_METADATA):
            prefixes[folder + "/" if folder else ""] += 1
    if not prefixes:
        return None
    return Tree(path, max(prefixes, key=lambda p: (prefixes[p], p == f"{remote.stem}/", p == "")))


def _digests(stream: IO[bytes], algorithms: list[str]) -> dict[str, str]:
    hashers = {algo: hashlib.new(algo, usedforsecurity=False) for algo in algorithms}
    while chunk := stream.read(_CHUNK):
        for h in hashers.values():
            h.update(chunk)
    return {algo: h.hexdigest() for algo, h in hashers.items()}


def _compare(member: Member, got: dict[str, str]) -> str:
    return ", ".join(f"{algo} {got[algo]}, expected {value}" for algo, value in member.checksums().items())


@dataclass(frozen=True)
class MemberCheck:
    """What comparing the files in a :class:`Tree` with the published per-file checksums found.

    Attributes:
        verified: the files that match their published checksums.
        unverifiable: files of the dataset that are present but have no published checksum of their own, or
            optional ones that differ from theirs (left out either way).
        unknown_required: files the loader needs that have no published checksum (so they cannot be verified).
        ignored: files that are not the dataset's.
        problems: one sentence per missing, different, unreadable or unverifiable required file.
    """

    tree: Tree
    verified: tuple[str, ...]
    unverifiable: tuple[str, ...]
    unknown_required: tuple[str, ...]
    ignored: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """For reports: which files were verified, and which were left out and why."""
        parts = [f"its {len(self.verified)} files {', '.join(self.verified)} match their published checksums"]
        if self.unverifiable:
            parts.append(
                f"left out (optional, and no published checksum of their own or not the published file): "
                f"{', '.join(self.unverifiable)}"
            )
        if self.ignored:
            shown = ", ".join(self.ignored[:5]) + (
                f" and {len(self.ignored) - 5} more" if len(self.ignored) > 5 else ""
            )
            parts.append(f"ignored (not files of the dataset): {shown}")
        return "; ".join(parts)

    def advice(self, remote: RemoteFile) -> str:
        """What to do about the problems."""
        whole = (
            f"the publisher's {remote.name} itself ({remote.url}; {remote.expected()}), which is verified as a whole"
        )
        if self.unknown_required:
            return f"Import {whole}"
        return f"Extract the publisher's {remote.name} again and import the folder, or import {whole}"


def check_members(remote: RemoteFile, tree: Tree, dataset: str) -> MemberCheck:
    """Compares every file of ``remote`` found in ``tree`` with its published checksums; hashes nothing else."""
    present = tree.files()
    verified: list[str] = []
    unverifiable: list[str] = []
    unknown_required: list[str] = []
    problems: list[str] = []
    for member in remote.members:
        expected = member.checksums()
        if member.name not in present:
            if member.required:
                problems.append(f"{dataset}: {member.name} is missing from {tree.where()}")
        elif not expected and member.required:
            unknown_required.append(member.name)
            problems.append(
                f"{dataset}: {member.name} has no published checksum of its own, so {tree.where()} cannot be "
                f"verified file by file"
            )
        elif not expected:
            unverifiable.append(member.name)
        else:
            try:
                with tree.open(member.name) as stream:
                    got = _digests(stream, list(expected))
            except (OSError, *BROKEN_ZIP) as error:
                problems.append(f"{dataset}: {member.name} cannot be read from {tree.where()} ({error})")
                continue
            if got == expected:
                verified.append(member.name)
            elif not member.required:  # an edited README is left out; it does not block the data
                unverifiable.append(member.name)
            else:
                problems.append(f"{dataset}: {member.name} differs from the published file ({_compare(member, got)})")
    ignored = sorted(present - {m.name for m in remote.members})
    return MemberCheck(
        tree, tuple(verified), tuple(unverifiable), tuple(unknown_required), tuple(ignored), tuple(problems)
    )


def pack_members(remote: RemoteFile, tree: Tree, names: tuple[str, ...], dest: Path, dataset: str) -> None:
    """Writes the files ``names`` of ``tree`` into the zip ``dest`` as ``<stem>/<name>``, hashing each again
    as it is copied.

    Raises:
        ChecksumError: a file no longer matches (it changed since it was checked); ``dest`` is then incomplete.
    """
    members = {m.name: m for m in remote.members}
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            expected = members[name].checksums()
            hashers = {algo: hashlib.new(algo, usedforsecurity=False) for algo in expected}
            info = zipfile.ZipInfo(f"{remote.stem}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            try:
                with tree.open(name) as source, archive.open(info, "w") as out:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                        for h in hashers.values():
                            h.update(chunk)
            except BROKEN_ZIP as error:
                raise ChecksumError(f"{dataset}: {name} cannot be read from {tree.where()} ({error})") from error
            got = {algo: h.hexdigest() for algo, h in hashers.items()}
            if got != expected:
                raise ChecksumError(
                    f"{dataset}: {name} in {tree.where()} changed while it was imported "
                    f"({_compare(members[name], got)}); nothing was imported. Run the import again"
                )
