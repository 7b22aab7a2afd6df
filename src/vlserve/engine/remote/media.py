"""Images for an upstream: resized once to the model's pixel budget, then inlined as data URLs.

Media never reaches an upstream as a URL: vlserve has already fetched it through its address guard
and decoded it, so an upstream that would fetch any URL it is given (vLLM does by default) is never
asked to, and its CPU preprocessing receives images that need no resizing.
"""

from __future__ import annotations

import base64
import io
from typing import Literal

from PIL import Image

from vlserve.engine.base import MediaItem
from vlserve.media.resize import ImageBudget

ImageFormat = Literal["auto", "png", "jpeg"]
_JPEG_QUALITY = 92


def encode(image: Image.Image, image_format: Literal["png", "jpeg"]) -> bytes:
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG", compress_level=1)  # fast; loopback and LAN bytes are cheap
    return buffer.getvalue()


def inline_image(item: MediaItem, budget: ImageBudget, image_format: ImageFormat) -> tuple[str, int]:
    """(data URL of the image at the size the model sees it, its visual tokens).

    An image already at that size is sent as the client's own bytes when they hold exactly it (nothing
    to re-encode, nothing lost); any other is resized once and encoded as ``image_format``. ``auto``
    keeps the client's kind of encoding: JPEG for a JPEG (already lossy; several times smaller and
    faster than PNG for photos and scans), lossless PNG for everything else.
    """
    fitted = budget.fit(item.image, param="messages")
    tokens = budget.tokens(*fitted.size)
    if fitted is item.image and item.source is not None and item.source_type is not None:
        return f"data:{item.source_type};base64,{base64.b64encode(item.source).decode('ascii')}", tokens
    kind = image_format if image_format != "auto" else ("jpeg" if item.source_type == "image/jpeg" else "png")
    data = base64.b64encode(encode(fitted, kind)).decode("ascii")
    return f"data:image/{kind};base64,{data}", tokens
