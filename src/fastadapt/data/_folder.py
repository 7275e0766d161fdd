"""Generic sources: a folder of images per class, the standard few-shot split files, a table of features.

So that a user holding mini-ImageNet or CIFAR-FS images can run the standard splits:

- mini-ImageNet, Ravi & Larochelle 2017 (https://openreview.net/forum?id=rJY0-Kcll): ``{train,val,test}.csv``
  with ``filename,label`` rows (64 / 16 / 20 classes). The images are either in one flat folder, as Ravi's
  script leaves them (:func:`load_image_split`), or in one folder per class (:func:`load_image_folder` and
  :func:`split_from_files`).
- CIFAR-FS, Bertinetto et al. 2019 (arXiv:1805.08136): ``{train,val,test}.txt`` with one CIFAR-100 class name
  per line (:func:`load_image_folder` and :func:`split_from_files`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .._extras import require
from ..tasks import ClassSplit, LabelledPool
from ._registry import DataError

#: File name endings read as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_PARTS = ("train", "val", "test")


def _size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    return (image_size, image_size) if isinstance(image_size, int) else image_size


def _read_images(paths: Sequence[Path], image_size: int | tuple[int, int] | None, mode: str) -> torch.Tensor:
    """Images as ``(n, C, H, W)`` float32 in [0, 1]; resized (Lanczos) to ``image_size`` ``(H, W)`` if given."""
    require("PIL", "images", "reading image files")
    from PIL import Image

    size = _size(image_size)
    arrays: list[np.ndarray] = []
    for path in paths:
        with Image.open(path) as image:
            converted = image.convert(mode)
            if size is not None:
                converted = converted.resize((size[1], size[0]), Image.Resampling.LANCZOS)
        array = np.asarray(converted, dtype=np.uint8)
        if arrays and array.shape != arrays[0].shape:
            raise DataError(
                f"{path} is {array.shape[1]}x{array.shape[0]} but {paths[0]} is {arrays[0].shape[1]}x"
                f"{arrays[0].shape[0]}; pass image_size to resize all images to one size"
            )
        arrays.append(array)
    stacked = np.stack(arrays)  # (n, H, W) or (n, H, W, C)
    if stacked.ndim == 3:
        stacked = stacked[..., None]
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).float() / 255.0  # (n, C, H, W)


def _pool(
    paths: Sequence[Path], labels: Sequence[str], image_size: int | tuple[int, int] | None, mode: str
) -> LabelledPool:
    class_names = tuple(sorted(set(labels)))
    ids = {name: i for i, name in enumerate(class_names)}
    targets = torch.tensor([ids[label] for label in labels], dtype=torch.int64)
    return LabelledPool(_read_images(paths, image_size, mode), targets, class_names)


def list_image_folder(root: Path | str) -> tuple[list[Path], list[str]]:
    """The image files of ``root/<class>/<image>`` and their class names (classes and files in sorted order)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give a folder holding one sub-folder of images per class")
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(f)
                labels.append(folder.name)
    if not paths:
        raise DataError(f"{root} has no images in sub-folders; lay them out as {root}/<class>/<image>")
    return paths, labels


def load_image_folder(
    root: Path | str, image_size: int | tuple[int, int] | None = None, *, mode: str = "RGB"
) -> LabelledPool:
    """Images laid out as ``root/<class>/<image>``, one class per sub-folder (class ids in sorted order), decoded
    into memory (:func:`fastadapt.data.image_folder_dataset` reads them lazily instead).

    Args:
        root: the folder of class folders.
        image_size: resize every image to this side (or ``(H, W)``); if None, all images must share a size.
        mode: the Pillow mode to convert to: ``"RGB"`` (3 channels) or ``"L"`` (grey, 1 channel).

    Returns:
        A pool of ``(n, C, H, W)`` float32 images in [0, 1]. Everything is held in memory: mini-ImageNet's
        60,000 84x84 RGB images take 5 GB.
    """
    paths, labels = list_image_folder(root)
    return _pool(paths, labels, image_size, mode)


def read_split_csv(path: Path | str) -> list[tuple[str, str]]:
    """The ``(filename, label)`` rows of a Ravi & Larochelle split CSV (header ``filename,label``)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][:2]] != ["filename", "label"]:
        raise DataError(f"{path} does not start with the header 'filename,label' of the Ravi & Larochelle split files")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise DataError(f"{path}, line {number}: expected 'filename,label', got {row}")
    return [(row[0], row[1]) for row in rows[1:]]


def _split_classes(split_dir: Path) -> dict[str, list[str]]:
    """``{"train": class names, ...}`` from ``{part}.csv`` (Ravi) or ``{part}.txt`` (one class per line)."""
    classes = {}
    for part in _PARTS:
        csv_path, txt_path = split_dir / f"{part}.csv", split_dir / f"{part}.txt"
        if csv_path.is_file():
            classes[part] = list(dict.fromkeys(label for _, label in read_split_csv(csv_path)))
        elif txt_path.is_file():
            classes[part] = [line.strip() for line in txt_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            raise DataError(
                f"{split_dir} has neither {part}.csv nor {part}.txt; a split folder needs train, val and test"
            )
    return classes


def named_split(
    class_names: Sequence[str],
    parts: Mapping[str, Sequence[str]],
    problem: Callable[[list[str]], str],
    error: type[Exception] = DataError,
) -> ClassSplit:
    """The :class:`ClassSplit` of a pool's class ids from the class names of each part (``train``, ``val``,
    ``test``); names the pool lacks raise ``error`` with ``problem(missing names)`` as the message."""
    ids = {name: i for i, name in enumerate(class_names)}
    missing = [name for names in parts.values() for name in names if name not in ids]
    if missing:
        raise error(problem(missing))
    return ClassSplit(*(tuple(ids[name] for name in parts[part]) for part in _PARTS))


def split_from_files(class_names: Sequence[str], split_dir: Path | str) -> ClassSplit:
    """A :class:`ClassSplit` of a pool's class ids from standard split files in ``split_dir``:
    ``{train,val,test}.csv`` (``filename,label``, mini-ImageNet) or ``{train,val,test}.txt`` (one class name per
    line, CIFAR-FS)."""
    ids = {name: i for i, name in enumerate(class_names)}
    classes = _split_classes(Path(split_dir))
    for part, names in classes.items():
        missing = [n for n in names if n not in ids]
        if missing:
            raise DataError(
                f"{len(missing)} classes of the {part} split in {split_dir} are not in the pool (e.g. {missing[:3]}; "
                f"the pool has e.g. {list(class_names[:3])}); name the class folders as the split files do"
            )
    return ClassSplit(*(tuple(ids[n] for n in classes[part]) for part in _PARTS))


def find_split_images(images: Path | str, rows: Sequence[tuple[str, str]], where: str) -> list[Path]:
    """The file of each ``(filename, label)`` row of a split: ``images/<filename>`` (Ravi's flat layout),
    ``images/<label>/<filename>`` or ``images/<part>/<label>/<filename>`` (the pre-resized folders that split
    ``train/``, ``val/``, ``test/``). ``where``: the split files, for the message."""
    images = Path(images)
    if not images.is_dir():
        raise DataError(f"{images} is not a folder; give the folder of the images listed in {where}")
    parts = [images, *(images / p for p in _PARTS if (images / p).is_dir())]
    found = []
    for filename, label in rows:
        candidates = [base / name for base in parts for name in (filename, f"{label}/{filename}")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(
                f"{filename} (class {label}) is listed in {where} but is neither {images / filename} nor "
                f"{images / label / filename} (nor under {images}/train|val|test/); put all images of the split in "
                f"{images}"
            )
        found.append(path)
    return found


def load_image_split(
    images: Path | str, split_dir: Path | str, image_size: int | tuple[int, int] | None = None, *, mode: str = "RGB"
) -> tuple[LabelledPool, ClassSplit]:
    """The images listed in Ravi & Larochelle split CSVs (``split_dir/{train,val,test}.csv``), found as
    :func:`find_split_images` does, with their split, decoded into memory.

    Returns:
        ``(pool, split)``: ``(n, C, H, W)`` float32 images in [0, 1], classes in sorted order.
    """
    split_dir = Path(split_dir)
    rows = [row for part in _PARTS for row in read_split_csv(split_dir / f"{part}.csv")]
    paths = find_split_images(images, rows, str(split_dir))
    pool = _pool(paths, [label for _, label in rows], image_size, mode)
    return pool, split_from_files(pool.class_names, split_dir)


def _number(value: str, path: Path, line: int, column: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{path}, line {line}, column {column!r}: {value!r} is not a number") from None


def load_table(
    path: Path | str,
    label_column: str = "label",
    feature_columns: Sequence[str] | None = None,
    *,
    delimiter: str | None = None,
) -> LabelledPool:
    """A CSV table, one example per row: numeric feature columns and a label column.

    Args:
        path: a ``.csv`` file (``.tsv``/``.tab``: tab-separated) with a header row.
        label_column: the column holding class labels (any strings; sorted numerically if all integers).
        feature_columns: the feature columns, in order; default all columns but the label.
        delimiter: the field separator, if not implied by the suffix.

    Returns:
        A pool of ``(n, d)`` float32 features.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        raise DataError(
            f"{path}: fastadapt reads CSV, not Parquet (that would need pandas/pyarrow, which it does not depend "
            "on); convert it with `pandas.read_parquet(PATH).to_csv(PATH_CSV, index=False)`"
        )
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = list(reader.fieldnames or [])
        rows = [(reader.line_num, row) for row in reader]
    for line, row in rows:
        if None in row.values() or None in row:
            fewer = None in row.values()
            raise DataError(f"{path}, line {line}: the row has {'fewer' if fewer else 'more'} fields than the header")
    if label_column not in header:
        raise DataError(f"{path} has no column {label_column!r} (columns: {header}); pass label_column=")
    columns = list(feature_columns) if feature_columns is not None else [c for c in header if c != label_column]
    unknown = [c for c in columns if c not in header]
    if unknown or not columns:
        raise DataError(f"{path}: feature columns {unknown or columns} not usable (columns: {header})")
    if not rows:
        raise DataError(f"{path} has a header but no rows")
    features = torch.tensor(
        [[_number(row[c], path, line, c) for c in columns] for line, row in rows], dtype=torch.float32
    )  # (n, d)
    labels = [row[label_column] for _, row in rows]
    distinct = set(labels)
    numeric = all(label.lstrip("-").isdigit() for label in distinct)
    class_names = tuple(sorted(distinct, key=int if numeric else None))
    ids = {name: i for i, name in enumerate(class_names)}
    return LabelledPool(features, torch.tensor([ids[x] for x in labels], dtype=torch.int64), class_names)
