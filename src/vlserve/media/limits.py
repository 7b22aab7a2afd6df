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
