"""Images as a Qwen-VL model's image input, without transformers' image processor on the way.

The processor (``Qwen2VLImageProcessor``, its PIL backend where torchvision is absent) converts each image
to RGB (transparency over white), resizes it to :func:`~vlserve.media.resize.smart_resize`'s size with
Pillow's bicubic filter, scales it to [0, 1], normalises it with its mean and std, and cuts it into
``patch_size`` squares ordered by ``merge_size`` blocks, each square repeated ``temporal_patch_size`` times
(an image is a clip of identical frames): one row of ``channels x temporal x patch x patch`` values per
patch, ``image_grid_thw`` = (1, rows, cols). It does that in float64 and float32 numpy passes over the whole
image: about 70 ms of one core for a 1600x1200 photo at 1280 visual tokens.

Here the image is resized once, straight to that size (torch's port of Pillow's filter,
:mod:`vlserve.media.resample`), cut into patches as 8-bit pixels, and scaled and normalised in one
multiply-add written straight into the request's tensor (the repeats are copies of it): about 16 ms, the
resize included (docs/performance.md, "A fast image path"). The images of one request are processed in a
thread pool (torch and Pillow release the GIL). Given the same resized image the values equal the
processor's within 1e-6 (tests/engine/test_image_inputs.py).

A checkpoint whose processor asks for anything else (another class, another filter, no resizing, no RGB
conversion, a mean or std not of three channels) keeps transformers' processor: :meth:`ImageGeometry.of`
answers None.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlserve.media.resample import pixel_tensor, resize_tensor
from vlserve.media.resize import ImageBudget

# The processor classes whose steps are the ones above (transformers 5: PIL and torchvision backends).
KNOWN_PROCESSORS = frozenset({"Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil", "Qwen2VLImageProcessorFast"})
_BICUBIC = int(Image.Resampling.BICUBIC)
_CHANNELS = 3


@dataclass(frozen=True)
class ImageGeometry:
    """How a checkpoint's processor turns 8-bit RGB into patches: value = level x scale + shift, per channel."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    scale: tuple[float, ...]  # rescale_factor / std (or what of it the processor applies)
    shift: tuple[float, ...]  # -mean / std

    @classmethod
    def of(cls, processor: Any) -> ImageGeometry | None:
        """The geometry of ``processor``, or None when it does anything this module does not reproduce."""
        if type(processor).__name__ not in KNOWN_PROCESSORS:
            return None
        try:
            return cls._read(processor)
        except (TypeError, ValueError, AttributeError):
            return None

    @classmethod
    def _read(cls, processor: Any) -> ImageGeometry | None:
        if getattr(processor, "do_resize", True) is not True or getattr(processor, "do_convert_rgb", True) is not True:
            return None
        if int(getattr(processor, "resample", _BICUBIC)) != _BICUBIC:
            return None
        sizes = [int(getattr(processor, name)) for name in ("patch_size", "merge_size", "temporal_patch_size")]
        if min(sizes) < 1:
            return None
        scale = np.ones(_CHANNELS)
        shift = np.zeros(_CHANNELS)
        if processor.do_rescale:
            scale *= float(processor.rescale_factor)
        if processor.do_normalize:
            mean, std = _channels(processor.image_mean), _channels(processor.image_std)
            if mean is None or std is None or not np.all(std != 0):
                return None
            scale /= std
            shift = -mean / std
        return cls(*sizes, tuple(scale.tolist()), tuple(shift.tolist()))

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @property
    def row_size(self) -> int:
        """Values in one patch's row of ``pixel_values``."""
        return _CHANNELS * self.temporal_patch_size * self.patch_size**2


def _channels(value: Any) -> np.ndarray | None:
    """Three per-channel floats from a number or a sequence of three (the processors take both)."""
    if isinstance(value, Real):
        return np.full(_CHANNELS, float(value))
    values = [float(v) for v in value]
    return np.array(values) if len(values) == _CHANNELS else None


def processor_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB as the processor converts it: transparency composited over white, else ``convert``."""
    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def patchify_into(image: Image.Image, size: tuple[int, int], geometry: ImageGeometry, out: torch.Tensor) -> None:
    """``image`` resized to ``size`` (width, height), as patch rows written into ``out`` (rows x row_size)."""
    pixels = resize_tensor(pixel_tensor(np.asarray(processor_rgb(image))), size)  # one copy out of Pillow
    width, height = size
    p, m, t = geometry.patch_size, geometry.merge_size, geometry.temporal_patch_size
    rows_h, cols_w = height // p, width // p
    # (h/m, w/m, m, m, C, p, p), the processor's order, read in one 8-bit copy (a quarter of a float one's bytes)
    # from the pixels however they lie (rows of RGB from Pillow, planes of R, G and B from torch's resize)
    blocks = pixels.unflatten(0, (rows_h // m, m, p)).unflatten(3, (cols_w // m, m, p))  # (h/m, m, p, w/m, m, p, C)
    blocks = blocks.permute(0, 3, 1, 4, 6, 2, 5).reshape(rows_h * cols_w, _CHANNELS, p * p)
    frames = out.view(rows_h * cols_w, _CHANNELS, t, p * p)
    first = frames[:, :, 0]
    first.copy_(blocks)
    if len(set(geometry.scale)) == 1 and len(set(geometry.shift)) == 1:  # one value for all channels: one pass
        torch.add(torch.tensor(geometry.shift[0]), first, alpha=geometry.scale[0], out=first)
    else:
        first.mul_(torch.tensor(geometry.scale).view(1, _CHANNELS, 1))
        first.add_(torch.tensor(geometry.shift).view(1, _CHANNELS, 1))
    for frame in range(1, t):
        frames[:, :, frame].copy_(first)


def image_inputs(
    images: Sequence[Image.Image], budget: ImageBudget, geometry: ImageGeometry, *, pool: Executor | None = None
) -> dict[str, torch.Tensor]:
    """``pixel_values`` (float32) and ``image_grid_thw`` of ``images`` at the budget's sizes, as the processor
    makes them; with a ``pool``, several images are processed at once."""
    sizes = [budget.size_for(*image.size, param="messages") for image in images]
    grids = [(1, height // geometry.patch_size, width // geometry.patch_size) for width, height in sizes]
    counts = [h * w for _, h, w in grids]
    # numpy's allocation: it asks the kernel for huge pages for a large array (torch's does not), so the
    # tens of megabytes written here cost a few page faults, not thousands, when they are fresh memory
    pixel_values = torch.from_numpy(np.empty((sum(counts), geometry.row_size), dtype=np.float32))
    parts = pixel_values.split(counts)
    jobs = list(zip(images, sizes, parts, strict=True))
    if pool is not None and len(jobs) > 1:
        for done in [pool.submit(patchify_into, image, size, geometry, part) for image, size, part in jobs]:
            done.result()
    else:
        for image, size, part in jobs:
            patchify_into(image, size, geometry, part)
    return {"pixel_values": pixel_values, "image_grid_thw": torch.tensor(grids, dtype=torch.long)}
