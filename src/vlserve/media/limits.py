"""Size limits shared by every way an image reaches the server, and the errors for exceeding one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vlserve.errors import ImageError, PayloadTooLargeError

_MB = 1024 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """Per-image limits: encoded size in bytes, and width x height read from the header."""

    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class VideoLimits:
    """What a video may be (``enabled`` False: none is taken), and how its frames are sampled."""

    enabled: bool
    max_bytes: int  # encoded bytes (VLSERVE_VIDEO_MAX_BYTES)
    max_seconds: float  # duration, from the header and again from the frames' timestamps
    max_pixels: int  # width x height of one frame, from the header
    max_decode_pixels: int  # every frame the decoder produces, at full size, counted together
    fps: float  # frames sampled per second of video
    max_frames: int  # frames kept per video; a longer clip is sampled evenly over its whole length

    @property
    def frame_cap(self) -> int:
        """The frames kept at most: ``max_frames`` rounded down to an even count (Qwen3-VL takes frames in pairs)."""
        return max(2, self.max_frames - self.max_frames % 2)


def payload_too_large(
    max_bytes: int, *, param: str | None, what: str = "image", setting: str = "VLSERVE_MAX_IMAGE_BYTES"
) -> PayloadTooLargeError:
    """The 413 error for an input larger than ``max_bytes``, stating the limit in MB and the setting."""
    return PayloadTooLargeError(f"{what} is larger than the {max_bytes / _MB:.3g} MB limit ({setting})", param=param)


def too_many_pixels(size: tuple[int, int], max_pixels: int, *, param: str | None) -> ImageError:
    """The error for one image over ``VLSERVE_MAX_IMAGE_PIXELS``: the same status and code on every endpoint."""
    width, height = size
    return ImageError(
        f"image is {width}x{height} = {width * height} pixels, more than the "
        f"{max_pixels} pixel limit (VLSERVE_MAX_IMAGE_PIXELS)",
        param=param,
        code="image_too_large",
    )


def check_request_pixels(sizes: Sequence[tuple[int, int]], max_request_pixels: int, *, param: str) -> None:
    """Refuse a request whose images, read from their headers, have more pixels together than the budget."""
    total = sum(width * height for width, height in sizes)
    if total > max_request_pixels:
        shown = ", ".join(f"{w}x{h}" for w, h in sizes[:8]) + (" …" if len(sizes) > 8 else "")
        raise ImageError(
            f"the request's {len(sizes)} images have {total} pixels together ({shown}), more than the "
            f"{max_request_pixels} pixel limit per request (VLSERVE_MAX_REQUEST_PIXELS)",
            param=param,
            code="image_too_large",
        )


def check_media_pixels(
    sizes: Sequence[tuple[int, int]], video_pixels: Sequence[int], max_request_pixels: int, *, param: str
) -> None:
    """Refuse a request whose images (from their headers) and videos (the frames each keeps, at the size kept)
    have more pixels together than the per-request budget; nothing is decoded yet."""
    images = sum(width * height for width, height in sizes)
    total = images + sum(video_pixels)
    if total > max_request_pixels:
        raise ImageError(
            f"the request's {len(sizes)} images ({images} pixels) and {len(video_pixels)} videos' frames "
            f"({total - images} pixels) have {total} pixels together, more than the {max_request_pixels} pixel "
            "limit per request (VLSERVE_MAX_REQUEST_PIXELS)",
            param=param,
            code="image_too_large",
        )
