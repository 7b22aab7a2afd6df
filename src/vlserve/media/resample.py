"""Bicubic resizing with Pillow's filter (antialiased when shrinking), on Pillow or on torch.

The Qwen-VL image processors resize with Pillow (``Image.resize(size, BICUBIC)``). torch's
``interpolate(mode="bicubic", antialias=True)`` is a port of that filter (same support, same coefficients)
vectorised for the CPU: on 8-bit channels-last pixels about three times faster, its values within two
levels of Pillow's (under 1 % of them differ at all). The transformers engine, which has torch loaded,
uses it; the gateway keeps Pillow, so it never imports torch (1.2 s and about 210 MB of memory) for images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

Backend = Literal["pillow", "torch"]


def resize_image(image: Image.Image, size: tuple[int, int], *, backend: Backend = "pillow") -> Image.Image:
    """An RGB ``image`` at ``size`` (width, height); itself when it is that size already."""
    if image.size == size:
        return image
    if backend == "torch" and image.mode == "RGB":
        return Image.fromarray(resize_pixels(np.asarray(image), size))
    return image.resize(size, Image.Resampling.BICUBIC)


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(height, width, channels) 8-bit pixels resized to ``size`` (width, height) with torch; the array itself
    when it is that size already."""
    width, height = size
    if pixels.shape[:2] == (height, width):
        return pixels
    return resize_tensor(pixel_tensor(pixels), size).contiguous().numpy()


def pixel_tensor(pixels: np.ndarray) -> torch.Tensor:
    """A tensor over ``pixels`` (a read-only array from Pillow included), copied only where torch cannot share
    a read-only array (numpy before 2.1)."""
    import torch

    if pixels.flags.writeable:
        return torch.from_numpy(pixels)
    try:
        return torch.from_dlpack(pixels)  # DLPack 1.0 carries the read-only flag: no copy
    except (BufferError, TypeError, RuntimeError):
        return torch.from_numpy(pixels.copy())


def resize_tensor(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (height, width, channels) uint8 tensor resized to ``size`` (width, height); the result is laid out as
    torch leaves it (call ``contiguous`` for plain rows)."""
    import torch  # here, not at the top: the gateway never imports torch

    width, height = size
    if tuple(pixels.shape[:2]) == (height, width):
        return pixels
    batch = pixels.permute(2, 0, 1).unsqueeze(0)  # (1, C, H, W) in channels-last memory: torch's fast path
    out = torch.nn.functional.interpolate(batch, size=(height, width), mode="bicubic", antialias=True)
    return out[0].permute(1, 2, 0)
