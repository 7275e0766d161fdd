"""MNIST (LeCun, Bottou, Bengio & Haffner 1998) and the IDX format its files are in.

An IDX file, as the MNIST page describes it: two zero bytes; a type byte (``0x08`` unsigned byte, ``0x09``
signed byte, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64); the number of dimensions
(one byte); each dimension's size as a big-endian uint32; then the values, big-endian, row-major. MNIST's
images are ``idx3-ubyte`` files of shape ``(n, 28, 28)`` and its labels ``idx1-ubyte`` files of shape ``(n,)``,
published gzipped.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._download import ensure_dataset
from ._registry import REGISTRY, DataError

#: IDX type byte -> numpy dtype (big-endian, as stored).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
#: (images, labels) of the training set, then of the test set.
_PARTS = (
    ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it is gzip (recognised by its magic bytes, not its name: browsers often
    gunzip a download but keep the ``.gz``)."""
    with path.open("rb") as f:
        if f.read(2) != _GZIP_MAGIC:
            f.seek(0)
            return f.read()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({error}); get it again") from error


def read_idx(path: Path | str) -> np.ndarray:
    """Reads an IDX file (plain or gzipped) into an array of its shape and type, in native byte order.

    Raises:
        DataError: naming the file and the problem: not IDX (bad magic), truncated or with trailing data (how
            many bytes were expected and found), or a truncated or corrupt gzip stream.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; give an IDX file, plain or gzipped")
    data = _read_bytes(path)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        raise DataError(
            f"{path} is not an IDX file: it starts with {data[:4].hex(' ') or 'nothing'}, expected 00 00, a type "
            f"byte ({', '.join(f'{t:02x}' for t in _IDX_TYPES)}) and the number of dimensions"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path} is truncated: its {ndim} dimensions need a {header}-byte header, found {len(data)} bytes in all"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected, found = math.prod(shape) * dtype.itemsize, len(data) - header
    if found != expected:
        problem = "truncated" if found < expected else "followed by trailing data"
        raise DataError(
            f"{path} is {problem}: an IDX array of shape {shape} and type {dtype.name} needs {expected:,} bytes "
            f"after its header, found {found:,}; get the file again"
        )
    array = np.frombuffer(data, dtype, count=math.prod(shape), offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def _source_files(root: Path | str) -> dict[str, Path]:
    """MNIST's four files in ``root``: each as published (``.gz``) or gunzipped (the same name without it)."""
    root = Path(root)
    found = {}
    for remote in REGISTRY["mnist"].files:
        candidates = (root / remote.name, root / remote.name.removesuffix(".gz"))
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(
                f"neither {candidates[0]} nor {candidates[1]} exists; put MNIST's {remote.name} ({remote.url}) "
                "there, or leave root unset to use the cache (`fastadapt data download mnist`)"
            )
        found[remote.name] = path
    return found


def _read_part(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{images_path} holds {images.dtype.name} of shape {images.shape}, not MNIST's (n, 28, 28) unsigned "
            "bytes; give MNIST's image file"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path} holds {labels.dtype.name} of shape {labels.shape}, not MNIST's (n,) unsigned bytes; "
            "give MNIST's label file"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} labels; give the "
            "image and label files of the same MNIST set"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path} has the label {labels.max()}; MNIST's labels are 0..9: give MNIST's labels")
    return images, labels.astype(np.int64)


def load_mnist(
    root: Path | str | None = None,
    *,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    cache_dir: Path | str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 MNIST digits: the 60,000 training images, then the 10,000 test images.

    Args:
        root: a directory holding MNIST's four files, gzipped as published or gunzipped (same names without
            ``.gz``), used as they are: their checksums are not checked. Default: the verified copies in the
            cache (``fastadapt data download mnist`` or ``fastadapt data import mnist PATH``), downloaded first
            if ``download``.
        download: download missing files into the cache (only when ``root`` is None).
        mirrors: base URLs replacing the canonical host when downloading.
        cache_dir: the cache root (default :func:`data_home`).
        progress: show download progress bars.

    Returns:
        ``(images, labels)``: uint8 images ``(70000, 28, 28)``, ink 255 on a 0 background, and int64 labels
        ``(70000,)`` in 0..9. ``images[:60000]`` is the training set.
    """
    if root is None:
        directory = ensure_dataset(
            "mnist", cache_dir=cache_dir, download_missing=download, mirrors=mirrors, progress=progress
        )
        files = {f.name: directory / f.name for f in REGISTRY["mnist"].files}
    else:
        files = _source_files(root)
    parts = [_read_part(files[images], files[labels]) for images, labels in _PARTS]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
