"""Image datasets that decode on demand: files read with Pillow when an episode holds them (:class:`ImageFiles`),
or uint8 arrays in memory converted per example (:class:`ArrayImages`); and the standard training augmentation.

Both are map-style ``torch.utils.data.Dataset`` objects with a ``targets`` list, so that
:class:`~fastadapt.tasks.DatasetPool` draws episodes from the labels without decoding anything.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._extras import require
from ._registry import DataError

_MODES = {1: "L", 3: "RGB"}


def _normaliser(mean: Sequence[float], std: Sequence[float], channels: int) -> tuple[Tensor, Tensor] | None:
    if not mean and not std:
        return None
    if len(mean) != channels or len(std) != channels:
        raise DataError(
            f"data.mean and data.std need one value per channel ({channels}); got mean={list(mean)}, std={list(std)}"
        )
    if any(s <= 0 for s in std):
        raise DataError(f"data.std must be positive, got {list(std)}")
    shape = (channels, 1, 1)
    return torch.tensor(mean, dtype=torch.float32).view(shape), torch.tensor(std, dtype=torch.float32).view(shape)


class _Images(Dataset[tuple[Tensor, int]]):
    def __init__(self, targets: Sequence[int], classes: Sequence[str], channels: int, mean: Any, std: Any) -> None:
        self.targets, self.classes, self.channels = list(targets), list(classes), channels
        self._norm = _normaliser(tuple(mean), tuple(std), channels)

    def __len__(self) -> int:
        return len(self.targets)

    def _finish(self, image: np.ndarray) -> Tensor:
        """``(H, W)`` or ``(H, W, C)`` uint8 -> ``(C, H, W)`` float32 in [0, 1], normalised if asked."""
        array = image[..., None] if image.ndim == 2 else image
        x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0
        if self._norm is not None:
            x = (x - self._norm[0]) / self._norm[1]
        return x


class ImageFiles(_Images):
    """Image files decoded with Pillow when read, resized to ``image_size`` (Lanczos) and converted to
    ``channels`` (1: grey, 3: RGB). Only the file list is held in memory.

    Args:
        paths: one file per example.
        targets: its class id.
        classes: a name per class id.
        image_size: side of the square output (or ``(H, W)``).
        channels: 1 or 3.
        mean, std: per-channel normalisation after scaling to [0, 1] (empty: none).
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        targets: Sequence[int],
        classes: Sequence[str],
        image_size: int | tuple[int, int],
        channels: int = 3,
        mean: Sequence[float] = (),
        std: Sequence[float] = (),
    ) -> None:
        require("PIL", "images", "reading image files")
        if channels not in _MODES:
            raise DataError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels}")
        if len(paths) != len(targets):
            raise DataError(f"{len(paths)} image files but {len(targets)} labels")
        super().__init__(targets, classes, channels, mean, std)
        self.paths = [Path(p) for p in paths]
        self.size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.size)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                converted = image.convert(_MODES[self.channels])
                if converted.size != (self.size[1], self.size[0]):
                    converted = converted.resize((self.size[1], self.size[0]), Image.Resampling.LANCZOS)
                array = np.array(converted, dtype=np.uint8)  # a writable copy
        except (OSError, UnidentifiedImageError) as error:
            raise DataError(f"{path}: not a readable image ({error}); remove or replace the file") from None
        return self._finish(array), self.targets[index]


class ArrayImages(_Images):
    """uint8 images held in memory (``(n, H, W)`` or ``(n, H, W, C)``), converted to float one by one when read:
    MNIST takes 55 MB this way instead of 220 MB as float32, CIFAR-100 184 MB instead of 737 MB."""

    def __init__(
        self,
        images: np.ndarray,
        targets: Sequence[int],
        classes: Sequence[str],
        mean: Sequence[float] = (),
        std: Sequence[float] = (),
    ) -> None:
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise DataError(f"images must be uint8 (n, H, W) or (n, H, W, C), got {images.dtype} {images.shape}")
        if len(images) != len(targets):
            raise DataError(f"{len(images)} images but {len(targets)} labels")
        channels = 1 if images.ndim == 3 else images.shape[3]
        super().__init__(targets, classes, channels, mean, std)
        self.images = images

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (self.channels, self.images.shape[1], self.images.shape[2])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self._finish(self.images[index]), self.targets[index]


class CropFlip:
    """The standard few-shot training augmentation (RFS, MetaOptNet): pad by ``padding`` pixels (zeros: after
    ``data.mean`` / ``data.std`` the mean colour, where RFS pads black), take a random crop of the original size,
    flip horizontally with probability 1/2. On ``(C, H, W)`` tensors; draws from
    torch's global generator (seeded per episode by the sampler)."""

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        self.padding, self.flip = padding, flip

    def __call__(self, x: Tensor) -> Tensor:
        if self.padding:
            h, w = x.shape[-2:]
            padded = torch.nn.functional.pad(x, (self.padding,) * 4)
            top, left = (int(v) for v in torch.randint(0, 2 * self.padding + 1, (2,)))
            x = padded[..., top : top + h, left : left + w]
        if self.flip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, flip={self.flip})"


#: The augmentations a config names (``data.augment``); anything else is an import path ``module:callable``.
AUGMENTATIONS: dict[str, Callable[[], Callable[[Tensor], Tensor]]] = {
    "crop_flip": CropFlip,
    "flip": lambda: CropFlip(padding=0),
}


def import_object(path: str, key: str) -> Any:
    """The object at ``module:attribute`` (``key``: the config key, for the message)."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise DataError(f"{key}={path!r} is not an import path of the form package.module:name")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise DataError(f"{key}={path!r} cannot be imported ({error}); is the module on the Python path?") from None


def _takes_nothing(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def augmentation(name: str | None) -> Callable[[Tensor], Tensor] | None:
    """``data.augment``: ``None``, a name in :data:`AUGMENTATIONS`, or ``module:callable`` (a factory returning the
    augmentation, or the augmentation itself: a callable on one ``(C, H, W)`` tensor)."""
    if name is None:
        return None
    if name in AUGMENTATIONS:
        return AUGMENTATIONS[name]()
    if ":" not in name:
        raise DataError(f"data.augment={name!r}; choose one of {sorted(AUGMENTATIONS)} or give module:callable")
    found = import_object(name, "data.augment")
    if isinstance(found, type) or _takes_nothing(found):  # a class or a factory: make the augmentation
        found = found()
    if not callable(found):
        raise DataError(f"data.augment={name!r} is not callable")
    return found  # type: ignore[no-any-return]
