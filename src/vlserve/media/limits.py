"""Size limits shared by every way an image reaches the server, and the error for exceeding one."""

from __future__ import annotations

from dataclasses import dataclass

from vlserve.errors import PayloadTooLargeError

_MB = 1024 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """Per-image limits: encoded size in bytes, and width x height read from the header."""

    max_bytes: int
    max_pixels: int


def payload_too_large(max_bytes: int, *, param: str | None, what: str = "image") -> PayloadTooLargeError:
    """The 413 error for an input larger than ``max_bytes``, stating the limit in MB."""
    return PayloadTooLargeError(
        f"{what} is larger than the {max_bytes / _MB:.3g} MB limit (VLSERVE_MAX_IMAGE_BYTES)",
        param=param,
    )
