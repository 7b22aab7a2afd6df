"""Decode untrusted image bytes into an RGB image, refusing oversized, bomb-like and corrupt input.

The pixel limit is checked from the header (``Image.open`` reads only the header) before anything
is decoded, so a small file that claims 50000x50000 pixels costs microseconds, not gigabytes. An
image larger than the model will see it is decoded straight to a smaller size: a JPEG through the
decoder's DCT scaling (``Image.draft``, 1/2 to 1/8), any image then reduced by a whole factor, never
below ``target_pixels`` (the engine's per-image budget, which resizes it the rest of the way).
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from PIL import Image, ImageOps

from vlserve.errors import ImageError
from vlserve.media.limits import ImageLimits, payload_too_large, too_many_pixels
from vlserve.media.rgb import to_rgb

__all__ = ["ImageLimits", "LoadedImage", "decode_image", "load_image", "read_size"]

_FORMATS = "PNG, JPEG, WebP, GIF, BMP, TIFF …"
_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}  # read by every engine
_ORIENTATION = 0x0112
# ``warnings.catch_warnings`` swaps process-wide state; serialise our own header reads around it.
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image, with its encoded bytes when they are exactly this image (no rotation, no
    conversion, one frame, a format every engine reads), so they can be passed on as they are."""

    image: Image.Image
    source: bytes | None = None  # the encoded bytes, when they hold exactly ``image``
    source_type: str | None = None  # how the client encoded it (image/png, image/jpeg, image/webp), if known


def load_image(data: bytes, limits: ImageLimits, *, param: str) -> Image.Image:
    """Fully decode ``data`` into an RGB image (EXIF orientation applied, first frame of animations)."""
    return decode_image(data, limits, param=param).image


def read_size(data: bytes, limits: ImageLimits, *, param: str) -> tuple[int, int]:
    """(width, height) from the header alone, checked against the limits; nothing is decoded."""
    _check_bytes(data, limits, param=param)
    image = _open_header(data, limits, param=param)
    with suppress(Exception):
        image.close()
    return image.size


def decode_image(data: bytes, limits: ImageLimits, *, param: str, target_pixels: int | None = None) -> LoadedImage:
    """Decode ``data`` (refusing it with a 4xx if it is not a usable image), keeping the bytes when the
    decoded image is exactly what they hold. With ``target_pixels``, a larger image is decoded to the
    smallest size (by whole factors) that still has at least that many pixels."""
    _check_bytes(data, limits, param=param)
    image = _open_header(data, limits, param=param)
    drafted = _draft(image, target_pixels)
    try:
        image.load()
    except Image.DecompressionBombError:
        raise too_many_pixels(image.size, limits.max_pixels, param=param) from None
    except Exception:
        raise ImageError(
            "image data is truncated or corrupt: the header is valid but the pixel data is incomplete",
            param=param,
            code="truncated_image",
        ) from None
    source_type = _MEDIA_TYPES.get(image.format or "")
    oriented = image
    with suppress(Exception):  # a malformed EXIF block only loses the orientation, not the image
        if image.getexif().get(_ORIENTATION, 1) != 1:
            oriented = ImageOps.exif_transpose(image)
    try:
        rgb = to_rgb(oriented)
    except Exception:
        raise ImageError(f"image colour mode {image.mode} cannot be converted to RGB", param=param) from None
    reduced = _reduce(rgb, target_pixels)
    exact = (
        source_type is not None and rgb is image and reduced is rgb and not drafted
        and not getattr(image, "is_animated", False)
    )  # fmt: skip
    return LoadedImage(reduced, data if exact else None, source_type)


def _check_bytes(data: bytes, limits: ImageLimits, *, param: str) -> None:
    if len(data) > limits.max_bytes:
        raise payload_too_large(limits.max_bytes, param=param)
    if not data:
        raise ImageError("image is empty (0 bytes)", param=param)


def _scale(size: tuple[int, int], target_pixels: int | None) -> float:
    """How many times each side is larger than it needs to be for ``target_pixels`` (1: not larger)."""
    width, height = size
    if not target_pixels or width * height <= target_pixels:
        return 1.0
    return math.sqrt(width * height / target_pixels)


def _draft(image: Image.Image, target_pixels: int | None) -> bool:
    """Ask a JPEG decoder for a DCT-scaled decode no smaller than the target; True if it will scale."""
    scale = _scale(image.size, target_pixels)
    if scale < 2 or image.format != "JPEG":
        return False
    width, height = image.size
    wanted = (math.ceil(width / scale), math.ceil(height / scale))
    with suppress(Exception):  # a decoder that cannot scale decodes at full size
        image.draft(None, wanted)
    return image.size != (width, height)


def _reduce(image: Image.Image, target_pixels: int | None) -> Image.Image:
    """``image`` shrunk by the largest whole factor that keeps at least ``target_pixels`` (box filter)."""
    factor = math.floor(_scale(image.size, target_pixels))
    if factor < 2:
        return image
    return image.reduce(factor)


def _open_header(data: bytes, limits: ImageLimits, *, param: str) -> Image.Image:
    """Parse the header only, and check the dimensions against the limits."""
    try:
        with _quiet_bomb_warning():
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError(
            f"image has more pixels than the {limits.max_pixels} pixel limit (VLSERVE_MAX_IMAGE_PIXELS)",
            param=param,
            code="image_too_large",
        ) from None
    except Exception:
        raise ImageError(
            f"image data is not a recognised image format ({_FORMATS}) or its header is invalid",
            param=param,
        ) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has zero size ({width}x{height})", param=param)
    if width * height > limits.max_pixels:
        raise too_many_pixels(image.size, limits.max_pixels, param=param)
    return image


@contextmanager
def _quiet_bomb_warning() -> Iterator[None]:
    """Keep PIL's DecompressionBombWarning out of the logs: our own pixel limit decides."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
