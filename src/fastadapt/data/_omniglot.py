"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015) as a labelled pool, and the split of Vinyals et al. 2016
(arXiv:1606.04080): 1,028 / 172 / 423 characters for training / validation / testing, each character
rotated by 0, 90, 180 and 270 degrees into four classes (pass ``rotations(0, 90, 180, 270)`` as the
``class_transforms`` of an :class:`~fastadapt.tasks.EpisodeSampler`).

Preprocessing, as in MAML (arXiv:1703.03400) and ProtoNets (arXiv:1703.05175): each 105x105 1-bit PNG is
converted to 8-bit grey, resized to ``image_size`` (Lanczos by default: anti-aliased grey edges), and
inverted so that strokes are 1.0 and the background 0.0 (MAML's data generator computes ``1 - image``).
``resample="nearest"`` gives binary images, which is what MAML's ``proc_images.py`` actually produced: Pillow
ignores the requested Lanczos filter when resizing a 1-bit image.

Decoding 32,460 PNGs takes a while, so the result is cached once as uint8 in a safetensors file under
``<data_home()>/omniglot/preprocessed/``, keyed by the sources' digests and the preprocessing parameters.

The split files under ``splits/omniglot_vinyals`` are from jakesnell/prototypical-networks @ c9bb4d25
(``data/omniglot/splits/vinyals``, MIT, LICENSE beside them).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .._extras import require
from ..tasks import ClassSplit, LabelledPool
from ._download import _atomic, _checksums, content_digest, ensure_dataset
from ._folder import named_split
from ._registry import REGISTRY, DataError, data_home

Resample = Literal["lanczos", "bilinear", "nearest"]
_FILTERS = ("lanczos", "bilinear", "nearest")  # names of Pillow's ``Image.Resampling`` members, lower-cased
#: Bump when the preprocessing changes, so that stale caches are not reused.
_PREPROCESSING_VERSION = 1


def _decode(data: bytes, image_size: int, resample: Resample) -> np.ndarray:
    """One PNG -> ``(image_size, image_size)`` uint8 with strokes 255 and background 0."""
    from PIL import Image  # checked by omniglot_pool (the images extra)

    with Image.open(io.BytesIO(data)) as image:
        grey = image.convert("L").resize((image_size, image_size), Image.Resampling[resample.upper()])
    return 255 - np.asarray(grey, dtype=np.uint8)


def _read_pngs(source: Path) -> list[tuple[str, str, bytes]]:
    """``(class name "Alphabet/characterNN", file name, PNG bytes)`` for every PNG of a zip or folder laid out as
    ``<top>/<Alphabet>/<characterNN>/<file>.png``."""
    found = []
    if source.is_dir():
        for f in source.rglob("*.png"):
            parts = f.relative_to(source).parts
            if len(parts) >= 3:
                found.append((f"{parts[-3]}/{parts[-2]}", parts[-1], f.read_bytes()))
    else:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                parts = tuple(info.filename.split("/"))
                if not info.is_dir() and parts[-1].endswith(".png") and len(parts) >= 3:
                    found.append((f"{parts[-3]}/{parts[-2]}", parts[-1], archive.read(info)))
    if not found:
        raise DataError(
            f"{source} holds no PNGs laid out as <Alphabet>/<characterNN>/<image>.png; give Omniglot's "
            "images_background / images_evaluation zip or the folder extracted from it"
        )
    return found


def _cache_key(sources: Sequence[Path], image_size: int, resample: Resample) -> str:
    digests = sorted(_checksums(s)["sha256"] if s.is_file() else content_digest(s)[0] for s in sources)
    params = {"sources": digests, "image_size": image_size, "resample": resample, "v": _PREPROCESSING_VERSION}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]


def _load_cached(path: Path) -> LabelledPool | None:
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as f:
            class_names = tuple(json.loads(f.metadata()["class_names"]))
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
    except (OSError, KeyError, TypeError, ValueError, SafetensorError):
        return None  # unreadable (e.g. written by another version): rebuilt and overwritten atomically
    return LabelledPool(images.float() / 255.0, labels, class_names)


def omniglot_pool(
    sources: Sequence[Path | str],
    image_size: int = 28,
    *,
    resample: Resample = "lanczos",
    cache_dir: Path | str | None = None,
    cache: bool = True,
    progress: bool = False,
) -> LabelledPool:
    """Omniglot characters from zips or extracted folders, one class per character.

    Classes are sorted by name (``"Alphabet/characterNN"``), examples by class and file name. Any subset
    works (e.g. the publisher's ``images_background_small1.zip``).

    Args:
        sources: Omniglot zips or folders (``<top>/<Alphabet>/<characterNN>/<image>.png``).
        image_size: side of the square output images.
        resample: the resizing filter.
        cache_dir: the cache root (default :func:`data_home`); the preprocessed array goes to
            ``<cache_dir>/omniglot/preprocessed/<key>.safetensors``.
        cache: read and write that cache.
        progress: show a progress bar while decoding.

    Returns:
        A pool of ``(n, 1, image_size, image_size)`` float32 images in [0, 1], strokes 1.
    """
    if resample not in _FILTERS:
        raise ValueError(f"resample={resample!r}; choose one of {sorted(_FILTERS)}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    paths = [Path(s) for s in sources]
    for p in paths:
        if not p.exists():
            raise DataError(f"{p} does not exist; give Omniglot zips or folders extracted from them")
    if cache:
        cached = (Path(cache_dir) if cache_dir is not None else data_home()) / "omniglot" / "preprocessed"
        cached = cached / f"{_cache_key(paths, image_size, resample)}.safetensors"
        if (pool := _load_cached(cached)) is not None:
            return pool
    require("PIL", "images", "decoding Omniglot's PNGs")
    pngs = sorted(png for p in paths for png in _read_pngs(p))
    class_names = tuple(sorted({c for c, _, _ in pngs}))
    if len({(c, f) for c, f, _ in pngs}) < len(pngs):
        raise DataError(f"the sources {[str(p) for p in paths]} contain the same image twice; give each set once")
    ids = {name: i for i, name in enumerate(class_names)}
    images = np.empty((len(pngs), 1, image_size, image_size), dtype=np.uint8)  # (n, 1, H, W)
    for i, (_, _, data) in enumerate(tqdm(pngs, desc="omniglot: decoding PNGs", disable=not progress)):
        images[i, 0] = _decode(data, image_size, resample)
    labels = torch.tensor([ids[c] for c, _, _ in pngs], dtype=torch.int64)
    if cache:
        with _atomic(cached) as tmp:
            save_file(
                {"images": torch.from_numpy(images), "labels": labels},
                tmp,
                metadata={"class_names": json.dumps(class_names), "image_size": str(image_size), "resample": resample},
            )
    return LabelledPool(torch.from_numpy(images).float() / 255.0, labels, class_names)


def load_omniglot(
    root: Path | str | None = None,
    image_size: int = 28,
    *,
    resample: Resample = "lanczos",
    download: bool = False,
    mirrors: Sequence[str] | None = None,
    cache_dir: Path | str | None = None,
    progress: bool = True,
) -> LabelledPool:
    """All 1,623 Omniglot characters (background and evaluation sets), 20 drawings each.

    Args:
        root: a directory holding ``images_background.zip`` and ``images_evaluation.zip`` (or the folders
            extracted from them), used as they are: their checksums are not checked. Default: the verified
            copies in the cache (``fastadapt data download omniglot`` or ``fastadapt data import omniglot PATH``),
            downloaded first if ``download``.
        image_size, resample: see :func:`omniglot_pool`.
        download: download missing files into the cache (only when ``root`` is None).
        mirrors: base URLs replacing the canonical host when downloading.
        cache_dir: the cache root (default :func:`data_home`).
        progress: show progress bars.

    Returns:
        A pool of ``(32460, 1, image_size, image_size)`` float32 images in [0, 1], strokes 1; class names
        ``"Alphabet/characterNN"`` in sorted order. See :func:`omniglot_vinyals_split`.
    """
    files = REGISTRY["omniglot"].files
    if root is None:
        directory = ensure_dataset(
            "omniglot", cache_dir=cache_dir, download_missing=download, mirrors=mirrors, progress=progress
        )
        sources = [directory / f.name for f in files]
    else:
        root = Path(root)
        sources = []
        for f in files:
            if (root / f.name).is_file():
                sources.append(root / f.name)
            elif (root / f.stem).is_dir():
                sources.append(root / f.stem)
            else:
                raise DataError(
                    f"neither {root / f.name} nor the folder {root / f.stem}/ exists; put Omniglot's {f.name} "
                    f"({f.url}) there, or leave root unset to use the cache (`fastadapt data download omniglot`)"
                )
    return omniglot_pool(sources, image_size, resample=resample, cache_dir=cache_dir, progress=progress)


def omniglot_vinyals_classes() -> dict[str, tuple[str, ...]]:
    """The character names (``"Alphabet/characterNN"``) of the Vinyals split: ``{"train": 1,028 names,
    "val": 172, "test": 423}``, read from the split files shipped with fastadapt (which list each character
    once per rotation, ``Alphabet/characterNN/rot090``)."""
    folder = resources.files("fastadapt.data").joinpath("splits", "omniglot_vinyals")
    split = {}
    for part in ("train", "val", "test"):
        lines = folder.joinpath(f"{part}.txt").read_text(encoding="utf-8").split()
        split[part] = tuple(dict.fromkeys(line.rsplit("/", 1)[0] for line in lines))
    return split


def omniglot_vinyals_split(class_names: Sequence[str]) -> ClassSplit:
    """The Vinyals split as class ids of a pool with these class names (``pool.class_names`` of
    :func:`load_omniglot`)."""
    return named_split(
        class_names,
        omniglot_vinyals_classes(),
        lambda missing: (
            f"{len(missing)} of the 1,623 characters of the Vinyals split are not in this pool (e.g. "
            f"{missing[:3]}); load the full pool with load_omniglot(), which reads both images_background and "
            "images_evaluation"
        ),
        ValueError,
    )
