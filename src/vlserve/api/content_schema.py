"""The JSON Schema of a message's content parts, as api/content.py reads them, for the OpenAPI schema.

The parts stay plain objects: api/content.py reads them one by one, so that an error names the part and
an unknown type is refused with the code ``unsupported_content_type``. The schema here says what it accepts:
text parts in every message, image parts (``image_url``, or Qwen's ``image``) and video parts (``video_url``,
or Qwen's ``video``: mp4, WebM or mov) in user and tool messages.
"""

from __future__ import annotations

from typing import Any

TEXT_PARTS = ("text",)
IMAGE_PARTS = ("image_url", "image")
VIDEO_PARTS = ("video_url", "video")
MEDIA_ROLES = ("user", "tool")  # the roles whose messages may hold images and videos

# An image a part points at: an http(s) URL (fetched) or a base64 data: URL of an image (decoded). The format
# says that the bytes must be an image as well, which no pattern can: clients and fuzzers that know the format
# (tests/e2e/test_schemathesis.py) send real ones.
IMAGE_URL_FORMAT = "image-url"
_IMAGE_URL = {
    "type": "string",
    "format": IMAGE_URL_FORMAT,
    "pattern": r"^(https?://|data:[^,]*;base64,)",
    "description": "An http(s) URL of an image, or a data: URL of one (data:image/png;base64,…).",
}
VIDEO_URL_FORMAT = "video-url"
_VIDEO_URL = {
    "type": "string",
    "format": VIDEO_URL_FORMAT,
    "pattern": r"^(https?://|data:[^,]*;base64,)",
    "description": "An http(s) URL of an mp4, WebM or mov video, or a data: URL of one (data:video/mp4;base64,…).",
}
# A string holding a JSON object (a tool call's arguments, a schema sent as text): the standard keywords say so,
# the pattern as far as a pattern can, and the format names it for generators, which do not read contentSchema.
JSON_OBJECT_FORMAT = "json-object"
JSON_OBJECT_TEXT = {
    "type": "string",
    "format": JSON_OBJECT_FORMAT,
    "pattern": r"^\s*\{[\s\S]*\}\s*$",
    "contentMediaType": "application/json",
    "contentSchema": {"type": "object"},
}

_TEXT: dict[str, Any] = {
    "title": "TextPart",
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_IMAGE_URL_PART: dict[str, Any] = {
    "title": "ImageURLPart",
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"const": "image_url"},
        "image_url": {
            "anyOf": [{"type": "object", "required": ["url"], "properties": {"url": _IMAGE_URL}}, _IMAGE_URL]
        },
    },
}
_IMAGE_PART: dict[str, Any] = {
    "title": "ImagePart",
    "description": "Qwen's own form: the URL as 'image' (or 'url').",
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"const": "image"}, "image": _IMAGE_URL, "url": _IMAGE_URL},
    "anyOf": [{"required": ["image"]}, {"required": ["url"]}],
}
_VIDEO_URL_PART: dict[str, Any] = {
    "title": "VideoURLPart",
    "description": "A video: its frames are sampled at VLSERVE_VIDEO_FPS, up to VLSERVE_VIDEO_MAX_FRAMES.",
    "type": "object",
    "required": ["type", "video_url"],
    "properties": {
        "type": {"const": "video_url"},
        "video_url": {
            "anyOf": [{"type": "object", "required": ["url"], "properties": {"url": _VIDEO_URL}}, _VIDEO_URL]
        },
    },
}
_VIDEO_PART: dict[str, Any] = {
    "title": "VideoPart",
    "description": "Qwen's own form: the URL as 'video' (or 'url').",
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"const": "video"}, "video": _VIDEO_URL, "url": _VIDEO_URL},
    "anyOf": [{"required": ["video"]}, {"required": ["url"]}],
}
TEXT_PART: dict[str, Any] = _TEXT
MEDIA_PART: dict[str, Any] = {"oneOf": [_TEXT, _IMAGE_URL_PART, _IMAGE_PART, _VIDEO_URL_PART, _VIDEO_PART]}
