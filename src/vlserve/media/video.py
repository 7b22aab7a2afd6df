"""Sample a video's frames the way Qwen3-VL takes them: ``fps`` frames a second, in pairs, each resized once.

The header is read and checked first (:mod:`vlserve.media.video_probe`); the plan follows from it: one frame
every ``1 / fps`` seconds, or, when that would be more than the frame cap, the cap spread evenly over the
whole clip (a lower rate, as Qwen3-VL's own processor does). Frames are then decoded in order and a frame is
kept when its own timestamp (from its pts, so a variable frame rate is sampled by time, not by count) reaches
the next sampling time; decoding stops once the last one is kept. Every frame the decoder produces counts
towards ``VLSERVE_VIDEO_MAX_DECODE_PIXELS``, and a frame later than ``VLSERVE_VIDEO_MAX_SECONDS`` ends it, so a
header that understates the clip still decodes no more than the limits.

Qwen3-VL's vision encoder takes frames two at a time (its temporal patch), so an odd count is padded with the
last frame again, as its video processor pads. Each kept frame is resized by FFmpeg's scaler straight to its
final size: a multiple of 32 px a side, within a per-frame pixel budget that shrinks as frames are added
(Qwen3-VL's ``video_preprocessor_config.json``: 24576 visual patches of 32x32 px for a whole video, at most 768
a frame, a share of at least 128), and never above the engine's per-image budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
from PIL import Image

from vlserve.errors import ImageError
from vlserve.media.resize import DEFAULT_MAX_PIXELS, ImageBudget
from vlserve.media.video_probe import (
    VideoLimits,
    VideoProbe,
    check_video_bytes,
    invalid_video,
    open_container,
    probe,
    too_long,
    too_much_decoding,
)

__all__ = ["LoadedVideo", "VideoLimits", "VideoPlan", "decode_video", "plan_video"]

_PATCH = 32 * 32
VIDEO_TOTAL_PIXELS = 24576 * _PATCH  # a whole video's pixels (Qwen3-VL: size.longest_edge)
MAX_FRAME_PIXELS = 768 * _PATCH  # one frame at most (Qwen3-VL: max_video_tokens)
MIN_FRAME_PIXELS = 128 * _PATCH  # a frame's share of the budget at least, however many frames share it
SMALLEST_FRAME = 4 * _PATCH  # a smaller frame is scaled up to this (Qwen3-VL: size.shortest_edge)
TEMPORAL_PATCH = 2  # frames per temporal patch: the count is made even
_EPSILON = 1e-3  # seconds: a frame this early for a sampling time still takes it
_ROTATIONS = {90: Image.Transpose.ROTATE_90, -90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180}


@dataclass(frozen=True)
class LoadedVideo:
    """A video's sampled frames (an even count, each resized), the second of the clip each was taken at, the
    rate they were sampled at, and the client's container bytes."""

    frames: tuple[Image.Image, ...]
    timestamps: tuple[float, ...]
    fps: float
    source: bytes
    source_type: str


@dataclass(frozen=True)
class VideoPlan:
    """How a video will be sampled, decided from its header alone."""

    probe: VideoProbe
    count: int  # frames kept (even, the padding included)
    step_s: float  # seconds between sampling times
    size: tuple[int, int]  # (width, height) of each kept frame, before any rotation the frames carry

    @property
    def kept_pixels(self) -> int:
        """Pixels of the frames kept, all together: what the request's pixel budget counts."""
        return self.count * self.size[0] * self.size[1]

    @property
    def decode_pixels(self) -> int:
        """Pixels held while decoding: the frames kept and the full-size frame being decoded."""
        return self.kept_pixels + self.probe.width * self.probe.height


def frame_budget(count: int, target_pixels: int | None) -> ImageBudget:
    """The per-frame pixel budget of a video of ``count`` frames (the engine's per-image one at most)."""
    share = max(VIDEO_TOTAL_PIXELS // max(count, 1), MIN_FRAME_PIXELS)
    high = min(target_pixels or DEFAULT_MAX_PIXELS, MAX_FRAME_PIXELS, share)
    return ImageBudget(min_pixels=min(SMALLEST_FRAME, high), max_pixels=high)


def plan_video(found: VideoProbe, limits: VideoLimits, *, target_pixels: int | None, param: str) -> VideoPlan:
    """How many frames, how far apart, and at what size, for a video whose header is ``found``."""
    cap = limits.frame_cap
    step = 1 / limits.fps
    if found.duration_s is None:
        wanted = cap
    else:
        wanted = max(1, math.ceil(found.duration_s * limits.fps - _EPSILON))
        if wanted > cap:
            wanted, step = cap, found.duration_s / cap
    count = wanted + wanted % TEMPORAL_PATCH
    size = frame_budget(count, target_pixels).size_for(found.width, found.height, param=param)
    return VideoPlan(found, count, step, size)


def decode_video(
    data: bytes, limits: VideoLimits, *, param: str, target_pixels: int | None = None, plan: VideoPlan | None = None
) -> LoadedVideo:
    """Probe (unless ``plan`` is given), then decode and sample ``data``; refusals are 4xx naming the limit."""
    check_video_bytes(data, limits, param=param)
    with open_container(data, param=param) as container:
        if plan is None:
            plan = plan_video(probe(container, limits, param=param), limits, target_pixels=target_pixels, param=param)
        try:
            frames, times = _sample(container, plan, limits, param)
        except av.FFmpegError:
            raise invalid_video("its frame data is corrupt or truncated", param) from None
    if not frames:
        raise invalid_video("no frame could be decoded", param)
    if len(frames) % TEMPORAL_PATCH:  # pad the last pair, as Qwen3-VL's processor does
        frames.append(frames[-1])
        times.append(times[-1])
    return LoadedVideo(tuple(frames), tuple(times), 1 / plan.step_s, data, plan.probe.media_type)


def _sample(
    container: av.container.InputContainer, plan: VideoPlan, limits: VideoLimits, param: str
) -> tuple[list[Image.Image], list[float]]:
    stream = container.streams.video[0]
    wanted = plan.count - plan.count % TEMPORAL_PATCH or plan.count  # the padding is added after
    start = plan.probe.start_s
    frames: list[Image.Image] = []
    times: list[float] = []
    decoded = 0
    due = start  # the next sampling time
    for index, frame in enumerate(container.decode(stream)):
        decoded += frame.width * frame.height
        if decoded > limits.max_decode_pixels:
            raise too_much_decoding(limits.max_decode_pixels, param)
        if frame.width * frame.height > limits.max_pixels:  # a stream may change size after its header
            raise ImageError(
                f"a video frame is {frame.width}x{frame.height}, more than the {limits.max_pixels} pixel limit "
                "(VLSERVE_VIDEO_MAX_PIXELS)",
                param=param,
                code="video_too_large",
            )
        moment = frame.time if frame.time is not None else start + index * plan.step_s
        if moment - start > limits.max_seconds:
            raise too_long(moment - start, limits.max_seconds, param)
        if moment + _EPSILON < due:
            continue
        frames.append(_picture(frame, plan.size))
        times.append(round(max(0.0, moment - start), 3))
        if len(frames) >= wanted:
            break
        while due <= moment + _EPSILON:  # a gap in a variable frame rate passes several sampling times
            due += plan.step_s
    return frames, times


def _picture(frame: av.VideoFrame, size: tuple[int, int]) -> Image.Image:
    """The frame as RGB at ``size`` (the frame's rotation, if it carries one, applied after scaling)."""
    turn = _ROTATIONS.get(int(round(frame.rotation or 0)))  # a quarter turn makes (w, h) upright (h, w)
    image = frame.to_image(width=size[0], height=size[1], interpolation="BICUBIC")
    return image if turn is None else image.transpose(turn)
