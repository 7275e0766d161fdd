"""CIFAR-100 (Krizhevsky 2009), its CIFAR-FS class split (Bertinetto et al. 2019, arXiv:1805.08136), and the
mini-ImageNet split files of Ravi & Larochelle (2017).

``cifar-100-python.tar.gz`` holds ``cifar-100-python/{train,test,meta}``: Python pickles (protocol 2, written by
Python 2). ``train`` and ``test`` are dicts with ``data`` (uint8 ``(n, 3072)``: 1,024 red, 1,024 green then
1,024 blue values, each a row-major 32x32 plane), ``fine_labels``, ``coarse_labels``, ``filenames`` and
``batch_label``; ``meta`` has ``fine_label_names`` (100, in label order) and ``coarse_label_names`` (20).
Unpickling can run arbitrary code, so they are read by an unpickler that allows only the globals these files
use (numpy's array reconstruction, and ``_codecs.encode``, which Python 3's protocol-2 pickles use for bytes)
and refuses any other.

The split files under ``splits/cifar-fs_bertinetto`` are from bertinetto/r2d2 @ 9ed0090c (``cifar-fs_splits``,
MIT) and those under ``splits/miniimagenet_ravi`` from twitter/meta-learning-lstm @ 0df7fc74
(``data/miniImagenet``, MIT), byte for byte, LICENSE beside them (registry entries ``cifar-fs-splits`` and
``miniimagenet-splits``). CIFAR-FS names its classes exactly as CIFAR-100's ``fine_label_names`` do (all 100,
e.g. ``maple_tree``, ``aquarium_fish``), so no renaming is needed. Mini-ImageNet's images are not distributed
(ImageNet terms of access): the rows name files the user supplies (see :func:`fastadapt.data.load_image_split`).
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks import ClassSplit
from ._download import ensure_dataset
from ._folder import named_split, read_split_csv
from ._registry import REGISTRY, DataError

_TOP = "cifar-100-python"
_MEMBERS = ("train", "test", "meta")
_SIDE, _ROW = 32, 3 * 32 * 32
_PARTS = ("train", "val", "test")
#: What reading a damaged .tar.gz raises (truncated or corrupt gzip stream, broken tar headers).
_BROKEN_ARCHIVE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
#: What unpickling a damaged pickle raises (allowed globals called with bad arguments included).
_BROKEN_PICKLE = (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError)


def _encode_latin1(text: str, encoding: str = "utf-8") -> bytes:  # the defaults of codecs.encode
    """``_codecs.encode`` as Python 3's protocol-2 pickles call it for bytes (``encode(text, "latin1")``); any
    other codec is refused, since a codec name can select arbitrary encoders."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with the codec {encoding!r} (pickles of bytes use 'latin1')")
    return codecs.encode(text, "latin1")


#: numpy's array reconstructor, taken from how numpy pickles an array (so it is right for any numpy version).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
#: The globals that CIFAR-100's pickles need, by ``(module, name)``; the reconstructor under its numpy 1 name
#: (the publisher's files) and its numpy 2 name (files pickled again by numpy 2).
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode_latin1,
}


class _Unpickler(pickle.Unpickler):
    """Unpickles CIFAR's Python 2 pickles (``encoding="bytes"``: their str keys and values come back as bytes)
    allowing only the globals in ``_ALLOWED``."""

    def __init__(self, data: bytes, where: str) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str, /) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.where} refers to the global {module}.{name}, which CIFAR-100's pickles do not use: refused "
                f"and nothing was run; this is not the publisher's file, get {REGISTRY['cifar100'].files[0].url}"
            ) from None


def _unpickle(data: bytes, where: str) -> dict[bytes, Any]:
    try:
        record = _Unpickler(data, where).load()
    except _BROKEN_PICKLE as error:
        raise DataError(f"{where} is not a readable CIFAR-100 pickle ({error}); get the publisher's file") from error
    if not isinstance(record, dict):
        raise DataError(f"{where} holds a {type(record).__name__}, not CIFAR-100's dict; get the publisher's file")
    return record


def _entry(record: dict[bytes, Any], key: bytes, where: str) -> Any:
    if key not in record:
        keys = sorted(k.decode("latin1") if isinstance(k, bytes) else str(k) for k in record)
        raise DataError(f"{where} has no {key.decode()!r} entry (it has {keys}); get the publisher's file")
    return record[key]


def _read_archive(path: Path) -> dict[str, tuple[bytes, str]]:
    """``{member: (bytes, where)}`` for ``train``, ``test`` and ``meta`` of ``cifar-100-python.tar.gz``, read in
    one pass; the gzip stream is read to its end, so that a truncated archive or a wrong CRC is noticed even
    when all members were complete."""
    wanted = {f"{_TOP}/{m}": m for m in _MEMBERS}
    found = {}
    try:
        with gzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                member = wanted.get(info.name.removeprefix("./"))
                extracted = tar.extractfile(info) if member is not None and info.isfile() else None
                if member is not None and extracted is not None:
                    found[member] = (extracted.read(), f"{path}: {info.name}")
            while stream.read(1 << 20):  # the end-of-archive padding, then the CRC check
                pass
    except _BROKEN_ARCHIVE as error:
        raise DataError(
            f"{path} is truncated or corrupt ({type(error).__name__}: {error}); download it again "
            "(`fastadapt data download cifar100`)"
        ) from error
    missing = [f"{_TOP}/{m}" for m in _MEMBERS if m not in found]
    if missing:
        raise DataError(
            f"{path} has no member {', '.join(missing)}; it is not the publisher's cifar-100-python.tar.gz "
            "(or it is truncated): download it again"
        )
    return found


def _read_folder(folder: Path) -> dict[str, tuple[bytes, str]]:
    found = {}
    for member in _MEMBERS:
        path = folder / member
        if not path.is_file():
            raise DataError(f"{path} is missing; extract all of cifar-100-python.tar.gz, or give the archive itself")
        found[member] = (path.read_bytes(), str(path))
    return found


def _sources(root: Path | str) -> dict[str, tuple[bytes, str]]:
    root = Path(root)
    remote = REGISTRY["cifar100"].files[0]
    if (root / remote.name).is_file():
        return _read_archive(root / remote.name)
    if (root / _TOP).is_dir():
        return _read_folder(root / _TOP)
    raise DataError(
        f"neither {root / remote.name} nor the folder {root / _TOP}/ exists; put CIFAR-100's {remote.name} "
        f"({remote.url}) there, or leave root unset to use the cache (`fastadapt data download cifar100`)"
    )


def _images_and_labels(record: dict[bytes, Any], where: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    data, labels = _entry(record, b"data", where), _entry(record, b"fine_labels", where)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        kind = f"{data.dtype.name} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' is a {kind}, not CIFAR's uint8 rows; get the publisher's file")
    if data.shape[1] != _ROW:
        raise DataError(
            f"{where}: rows of 'data' have {data.shape[1]:,} bytes, expected {_ROW:,} (1,024 red, 1,024 green, 1,024 "
            "blue); get the publisher's file"
        )
    try:
        fine = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{where}: 'fine_labels' are not integers ({error}); get the publisher's file") from error
    if fine.shape != (len(data),):
        raise DataError(
            f"{where} has {len(data):,} rows of 'data' but {fine.size:,} 'fine_labels'; get the publisher's file"
        )
    if fine.size and (fine.min() < 0 or fine.max() >= classes):
        raise DataError(f"{where}: 'fine_labels' range over {fine.min()}..{fine.max()}, not 0..{classes - 1}")
    images = data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)  # (n, 3, 32, 32) planes -> (n, 32, 32, 3)
    return images, fine


def _class_names(record: dict[bytes, Any], where: str) -> tuple[str, ...]:
    names = _entry(record, b"fine_label_names", where)
    if not isinstance(names, list) or not all(isinstance(n, bytes) for n in names) or len(set(names)) != 100:
        raise DataError(f"{where}: 'fine_label_names' is not a list of 100 distinct names; get the publisher's file")
    return tuple(n.decode("latin1") for n in names)


def load_cifar100(
    root: Path | str | None = None,
    *,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    cache_dir: Path | str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """All 60,000 CIFAR-100 images: the 50,000 training images, then the 10,000 test images.

    Args:
        root: a directory holding ``cifar-100-python.tar.gz`` or the ``cifar-100-python/`` folder extracted
            from it, used as it is: its checksum is not checked. Default: the verified archive in the cache
            (``fastadapt data download cifar100`` or ``fastadapt data import cifar100 PATH``), downloaded first
            if ``download``.
        download: download the archive into the cache if missing (only when ``root`` is None).
        mirrors: base URLs replacing the canonical host when downloading.
        cache_dir: the cache root (default :func:`data_home`).
        progress: show a download progress bar.

    Returns:
        ``(images, labels, class_names)``: uint8 images ``(60000, 32, 32, 3)`` (height, width, RGB), int64 fine
        labels ``(60000,)`` indexing ``class_names``, the 100 fine class names of ``meta`` in label order
        (alphabetical). ``images[:50000]`` is the training set. See :func:`cifar_fs_split`.

    Raises:
        DataError: naming the file or member: missing, truncated, a pickle that uses a refused global, or rows
            that are not 3,072 bytes.
    """
    if root is None:
        remote = REGISTRY["cifar100"].files[0]
        directory = ensure_dataset(
            "cifar100", cache_dir=cache_dir, download_missing=download, mirrors=mirrors, progress=progress
        )
        sources = _read_archive(directory / remote.name)
    else:
        sources = _sources(root)
    names = _class_names(_unpickle(*sources["meta"]), sources["meta"][1])
    parts = [
        _images_and_labels(_unpickle(*sources[member]), sources[member][1], len(names)) for member in ("train", "test")
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), names


def _split_file(folder: str, name: str) -> Traversable:
    return resources.files("fastadapt.data").joinpath("splits", folder, name)


def cifar_fs_classes() -> dict[str, tuple[str, ...]]:
    """The CIFAR-100 fine class names of the CIFAR-FS split (Bertinetto et al. 2019, arXiv:1805.08136):
    ``{"train": 64 names, "val": 16, "test": 20}``, in the order of the split files shipped with fastadapt."""
    split = {}
    for part in _PARTS:
        text = _split_file("cifar-fs_bertinetto", f"{part}.txt").read_text(encoding="utf-8")
        split[part] = tuple(line.strip() for line in text.splitlines() if line.strip())
    return split


def cifar_fs_split(class_names: Sequence[str]) -> ClassSplit:
    """The CIFAR-FS split as class ids of a pool with these class names (``class_names`` of
    :func:`load_cifar100`)."""
    return named_split(
        class_names,
        cifar_fs_classes(),
        lambda missing: (
            f"{len(missing)} of CIFAR-FS's 100 classes are not among these class names (e.g. "
            f"{missing[:3]}); give the fine label names of CIFAR-100, as load_cifar100() returns them"
        ),
    )


def miniimagenet_ravi_rows() -> dict[str, list[tuple[str, str]]]:
    """The ``(filename, label)`` rows of Ravi & Larochelle's mini-ImageNet split (38,400 / 9,600 / 12,000 rows
    for 64 / 16 / 20 classes), from the split files shipped with fastadapt. The images themselves are not
    distributed (ImageNet terms of access)."""
    rows = {}
    for part in _PARTS:
        with resources.as_file(_split_file("miniimagenet_ravi", f"{part}.csv")) as path:
            rows[part] = read_split_csv(path)
    return rows
