"""A video's sampled frames as a Qwen-VL model's video input, without transformers' video processor.

The video processor (and the processor class around it) needs torchvision, which vlserve does not install;
its work on frames that are already resized is small, and reproduced here: scale to [0, 1], normalise with
the image processor's mean and std, group the frames in temporal patches of ``temporal_patch_size`` (the last
frame repeated to fill the last group), and cut each group into ``patch_size`` squares ordered by
``merge_size`` blocks, exactly as ``Qwen3VLVideoProcessor.patchify`` lays them out: one row per patch of
``channels x temporal_patch_size x patch_size x patch_size`` values, ``video_grid_thw`` = (groups, rows, cols).

In the prompt, Qwen3-VL shows each temporal group after the time it was taken at, ``<1.2 seconds>`` (the
mean of its frames' times), in its own ``<|vision_start|>…<|vision_end|>``; Qwen2-VL and Qwen2.5-VL show the
whole clip as one run of ``<|video_pad|>`` tokens (Qwen2.5-VL learns the time between groups from
``second_per_grid_ts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlserve.engine.base import MediaItem
from vlserve.errors import ServerError

VIDEO_PAD = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VIDEO_WRAPPER = VISION_START + VIDEO_PAD + VISION_END  # what a Qwen-VL chat template renders for one video
TIMESTAMPED = frozenset({"qwen3_vl", "qwen3_vl_moe"})  # model types that show each temporal group's time


@dataclass(frozen=True)
class VideoGeometry:
    """How a checkpoint cuts frames into patches: its image processor's values."""

    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255

    @classmethod
    def of(cls, image_processor: Any) -> VideoGeometry:
        def get(name: str, default: Any) -> Any:
            value = getattr(image_processor, name, None)
            return default if value is None else value

        return cls(
            patch_size=int(get("patch_size", 16)),
            merge_size=int(get("merge_size", 2)),
            temporal_patch_size=int(get("temporal_patch_size", 2)),
            mean=tuple(float(v) for v in get("image_mean", (0.5, 0.5, 0.5))),
            std=tuple(float(v) for v in get("image_std", (0.5, 0.5, 0.5))),
            rescale_factor=float(get("rescale_factor", 1 / 255)),
        )

    @property
    def factor(self) -> int:
        """Pixels per visual token along a side."""
        return self.patch_size * self.merge_size


@dataclass(frozen=True)
class ProcessedVideo:
    pixel_values: torch.Tensor  # (groups * rows * cols, channels * temporal_patch_size * patch_size**2)
    grid_thw: tuple[int, int, int]  # (groups, rows, cols) of patches
    group_seconds: tuple[float, ...]  # the time of each temporal group: the mean of its frames' times

    def tokens_per_group(self, merge_size: int) -> int:
        return self.grid_thw[1] * self.grid_thw[2] // (merge_size**2)


def _fitted(frames: Sequence[Image.Image], factor: int) -> list[Image.Image]:
    """Every frame RGB at the first frame's size rounded to multiples of ``factor`` (frames arrive resized
    into the per-frame budget already; this only guards the processor's arithmetic)."""
    width, height = frames[0].size
    size = (max(factor, round(width / factor) * factor), max(factor, round(height / factor) * factor))
    out = []
    for frame in frames:
        frame = frame if frame.mode == "RGB" else frame.convert("RGB")
        out.append(frame if frame.size == size else frame.resize(size, Image.Resampling.BICUBIC))
    return out


def process_video(item: MediaItem, geometry: VideoGeometry) -> ProcessedVideo:
    """One video's patches, grid and group times."""
    frames = list(item.frames) or [item.image]
    times = list(item.timestamps) or [0.0] * len(frames)
    if len(times) != len(frames):
        raise ServerError("a video's frames and timestamps differ in number")
    t = geometry.temporal_patch_size
    if pad := -len(frames) % t:  # the last frame repeated, as the processor pads
        frames += [frames[-1]] * pad
        times += [times[-1]] * pad
    fitted = _fitted(frames, geometry.factor)
    video = np.stack([np.asarray(frame, dtype=np.float32) for frame in fitted])  # (T, H, W, C)
    video = video * geometry.rescale_factor
    video = (video - np.asarray(geometry.mean, np.float32)) / np.asarray(geometry.std, np.float32)
    video = video.transpose(0, 3, 1, 2)  # (T, C, H, W)
    num_frames, channels, height, width = video.shape
    p, m = geometry.patch_size, geometry.merge_size
    grid_t, grid_h, grid_w = num_frames // t, height // p, width // p
    patches = video.reshape(grid_t, t, channels, grid_h // m, m, p, grid_w // m, m, p)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, h/m, w/m, m, m, C, tp, p, p)
    flat = np.ascontiguousarray(patches).reshape(grid_t * grid_h * grid_w, channels * t * p * p)
    seconds = tuple((times[i] + times[i + t - 1]) / 2 for i in range(0, len(times), t))
    return ProcessedVideo(torch.from_numpy(flat), (grid_t, grid_h, grid_w), seconds)


def placeholder(video: ProcessedVideo, merge_size: int, *, timestamped: bool) -> str:
    """The prompt text that replaces a template's ``<|vision_start|><|video_pad|><|vision_end|>``."""
    per_group = VIDEO_PAD * video.tokens_per_group(merge_size)
    if timestamped:
        return "".join(f"<{s:.1f} seconds>{VISION_START}{per_group}{VISION_END}" for s in video.group_seconds)
    return VISION_START + per_group * video.grid_thw[0] + VISION_END


def video_model_inputs(
    videos: Sequence[ProcessedVideo], fps: Sequence[float | None], geometry: VideoGeometry, *, model_type: str
) -> dict[str, torch.Tensor]:
    """``pixel_values_videos`` and ``video_grid_thw`` (and Qwen2.5-VL's ``second_per_grid_ts``) for the model."""
    inputs = {
        "pixel_values_videos": torch.cat([v.pixel_values for v in videos]),
        "video_grid_thw": torch.tensor([v.grid_thw for v in videos], dtype=torch.long),
    }
    if model_type == "qwen2_5_vl":  # seconds between temporal groups, as its processor computes it
        seconds = [geometry.temporal_patch_size / (rate or 2.0) for rate in fps]
        inputs["second_per_grid_ts"] = torch.tensor(seconds, dtype=torch.float32)
    return inputs
