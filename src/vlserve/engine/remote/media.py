"""Images and videos for an upstream: images resized once to the model's pixel budget, then inlined as data URLs;
a video as the client's own container bytes, in one ``data:video/…;base64`` URL.

Media never reaches an upstream as a URL: vlserve has already fetched it through its address guard
and decoded it, so an upstream that would fetch any URL it is given (vLLM does by default) is never
asked to, and its CPU preprocessing receives images that need no resizing.

A video is sent whole, as the client encoded it, never as a list of frames: vLLM 0.32 answers 500 to
pre-sampled frame lists on Qwen3-VL, and samples a clip itself (at the fps and frame cap its
``--media-io-kwargs`` set) with the timestamps Qwen3-VL expects. vLLM opens the bytes with FFmpeg (through
OpenCV, whatever the media type says), so MP4, WebM and QuickTime pass as they are: nothing is re-encoded.
"""

from __future__ import annotations

import base64
import io
from typing import Literal

from PIL import Image

from vlserve.engine.base import MediaItem
from vlserve.errors import ServerError
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


def inline_video(item: MediaItem, budget: ImageBudget, temporal_patch_size: int = 2) -> tuple[str, int]:
    """(data URL of the client's video bytes, its visual tokens as vlserve sampled it: a frame's tokens for each
    temporal group of ``temporal_patch_size`` frames)."""
    if item.source is None:
        raise ServerError("a video reached the engine without its container bytes")
    frames = item.frames or (item.image,)
    width, height = frames[0].size
    groups = -(-len(frames) // temporal_patch_size)
    tokens = groups * max(1, round(width / budget.factor)) * max(1, round(height / budget.factor))
    kind = item.source_type or "video/mp4"
    return f"data:{kind};base64,{base64.b64encode(item.source).decode('ascii')}", tokens


def inline_media(item: MediaItem, budget: ImageBudget, image_format: ImageFormat) -> tuple[str, int]:
    """(data URL, visual tokens) of an image or a video."""
    if item.kind == "video":
        return inline_video(item, budget)
    return inline_image(item, budget, image_format)
