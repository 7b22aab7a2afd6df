"""The per-image pixel budget of a Qwen-VL model, and resizing an image into it once.

A Qwen-VL image processor resizes every image so that both sides are multiples of ``factor`` (patch
size x spatial merge: 32 px for Qwen3-VL, 28 px for Qwen2.5-VL) and its area lies within
``[min_pixels, max_pixels]``; each ``factor x factor`` square becomes one visual token.
:func:`smart_resize` is that arithmetic (transformers' ``smart_resize``, which the tests compare it
with), so an image resized here with the same filter (bicubic) reaches the model's processor already
at its final size and is not resampled a second time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vlserve.errors import ImageError
from vlserve.media.resample import Backend, resize_image

QWEN3_VL_FACTOR = 32  # patch 16 x merge 2
DEFAULT_MAX_PIXELS = 1280 * 32 * 32  # 1280 visual tokens: the Qwen3-VL README's upper recommendation
DEFAULT_MIN_PIXELS = 64 * 32 * 32
MAX_ASPECT_RATIO = 200  # the processors' own limit


def smart_resize(height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width): multiples of ``factor``, area within the budget, aspect ratio kept as well as possible."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ImageBudget:
    min_pixels: int
    max_pixels: int
    factor: int = QWEN3_VL_FACTOR

    def size_for(self, width: int, height: int, *, param: str = "image") -> tuple[int, int]:
        """The (width, height) the model sees an image of this size at."""
        if max(width, height) / max(min(width, height), 1) > MAX_ASPECT_RATIO:
            raise ImageError(
                f"image is {width}x{height}; its aspect ratio must be below {MAX_ASPECT_RATIO}:1", param=param
            )
        h, w = smart_resize(height, width, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return w, h

    def tokens(self, width: int, height: int) -> int:
        """Visual tokens of an image of this size (after resizing)."""
        w, h = self.size_for(width, height)
        return (w // self.factor) * (h // self.factor)

    def fit(self, image: Image.Image, *, param: str = "image", backend: Backend = "pillow") -> Image.Image:
        """The image at the size the model sees it at (itself when it is already that size), resized once,
        straight to that size: a size the processor's own ``smart_resize`` leaves as it is."""
        return resize_image(image, self.size_for(*image.size, param=param), backend=backend)


def budget_from_processor(
    config: Mapping[str, Any], *, min_pixels: int | None = None, max_pixels: int | None = None
) -> ImageBudget:
    """The budget for a model whose ``preprocessor_config.json`` is ``config``; operator settings win.

    The checkpoint's own ``size`` (``shortest_edge`` / ``longest_edge`` in pixels, or the older
    ``min_pixels`` / ``max_pixels`` keys) is used when the operator sets nothing, its maximum capped at
    :data:`DEFAULT_MAX_PIXELS` (Qwen3-VL ships 16 M pixels: 16384 tokens for one image).
    """
    size = config.get("size") if isinstance(config.get("size"), Mapping) else {}
    own_min = size.get("shortest_edge") or config.get("min_pixels")
    own_max = size.get("longest_edge") or config.get("max_pixels")
    high = max_pixels or min(own_max or DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS)
    low = min_pixels or min(own_min or DEFAULT_MIN_PIXELS, high)
    factor = int(config.get("patch_size") or 16) * int(config.get("merge_size") or 2)
    return ImageBudget(min_pixels=low, max_pixels=high, factor=factor)
