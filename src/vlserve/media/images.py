"""Decode untrusted image bytes into an RGB image, refusing oversized, bomb-like and corrupt input.

The pixel limit is checked from the header (``Image.open`` reads only the header) before anything
is decoded, so a small file that claims 50000x50000 pixels costs microseconds, not gigabytes.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from PIL import Image, ImageOps

from vlserve.errors import ImageError
from vlserve.media.limits import ImageLimits, payload_too_large
from vlserve.media.rgb import to_rgb

__all__ = ["ImageLimits", "LoadedImage", "decode_image", "load_image"]

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


def decode_image(data: bytes, limits: ImageLimits, *, param: str) -> LoadedImage:
    """Fully decode ``data`` (refusing it with a 4xx if it is not a usable image), keeping the bytes when
    the decoded image is exactly what they hold."""
    if len(data) > limits.max_bytes:
        raise payload_too_large(limits.max_bytes, param=param)
    if not data:
        raise ImageError("image is empty (0 bytes)", param=param)
    image = _open_header(data, limits, param=param)
    try:
        image.load()
    except Image.DecompressionBombError:
        raise _too_many_pixels(image.size, limits, param=param) from None
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
    exact = source_type is not None and rgb is image and not getattr(image, "is_animated", False)
    return LoadedImage(rgb, data if exact else None, source_type)


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
        raise _too_many_pixels(image.size, limits, param=param)
    return image


def _too_many_pixels(size: tuple[int, int], limits: ImageLimits, *, param: str) -> ImageError:
    width, height = size
    return ImageError(
        f"image is {width}x{height} = {width * height} pixels, more than the "
        f"{limits.max_pixels} pixel limit (VLSERVE_MAX_IMAGE_PIXELS)",
        param=param,
        code="image_too_large",
    )


@contextmanager
def _quiet_bomb_warning() -> Iterator[None]:
    """Keep PIL's DecompressionBombWarning out of the logs: our own pixel limit decides."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
