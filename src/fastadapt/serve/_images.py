"""Images sent to the service (base64 PNG or JPEG) decoded as the run's dataset decodes its own: mode by the
model's channels, resized (Lanczos) to its input size, scaled to [0, 1], Omniglot's strokes inverted to 1 as
its loader does, and ``data.mean`` / ``data.std`` applied where the run sets them."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np

from .._extras import require

#: The image datasets; their runs take images as well as arrays of numbers.
IMAGE_DATASETS = ("digits", "omniglot", "mnist", "miniimagenet", "cifarfs", "folder")
_MODES = {1: "L", 3: "RGB"}


class ImageDecoder:
    """``decode(text)``: a base64 image (optionally a ``data:image/...;base64,`` URL) -> ``input_shape`` floats."""

    def __init__(self, dataset: str, input_shape: tuple[int, ...], mean: Any, std: Any, max_pixels: int) -> None:
        self.dataset, self.shape, self.max_pixels = dataset, input_shape, max_pixels
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1, 1, 1) if len(mean) else None
        self.std = np.asarray(std, dtype=np.float64).reshape(-1, 1, 1) if len(std) else None

    def decode(self, text: str, where: str) -> np.ndarray:
        from ._models import InputError  # the error type of every request check

        require("PIL", "images", "decoding images sent to the service")
        from PIL import Image, UnidentifiedImageError

        payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{where} is a string but not base64: send an image as base64 PNG or JPEG") from None
        channels, height, width = self.shape
        try:
            with Image.open(io.BytesIO(data)) as image:
                pixels = image.size[0] * image.size[1]
                if pixels > self.max_pixels:  # from the header, before anything is decompressed
                    raise InputError(
                        f"{where}: an image of {image.size[0]}x{image.size[1]} = {pixels} pixels is over the limit "
                        f"of {self.max_pixels} (image_pixels)",
                        "image_pixels",
                        pixels,
                        self.max_pixels,
                    )
                if image.format not in ("PNG", "JPEG"):
                    raise InputError(f"{where}: a {image.format} image; send PNG or JPEG")
                converted = image.convert(_MODES[channels])
                if converted.size != (width, height):
                    converted = converted.resize((width, height), Image.Resampling.LANCZOS)
                array = np.asarray(converted, dtype=np.uint8)
        except InputError:
            raise
        except (
            OSError,
            UnidentifiedImageError,
            Image.DecompressionBombError,
            SyntaxError,
            ValueError,
            EOFError,
        ) as error:
            # Pillow's decoders raise any of these on a malformed file
            raise InputError(f"{where}: not a readable PNG or JPEG image ({error})") from None
        if self.dataset == "omniglot":
            array = 255 - array  # strokes 1, background 0, as the Omniglot loader gives them
        x = (array[..., None] if array.ndim == 2 else array).transpose(2, 0, 1) / 255.0
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x
