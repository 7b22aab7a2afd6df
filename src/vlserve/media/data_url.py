"""Decode ``data:image/...;base64,...`` URLs, checking the size before decoding anything."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from vlserve.errors import ClientError
from vlserve.media.limits import payload_too_large

_EXAMPLE = "data:image/png;base64,iVBORw0..."
_VIDEO_EXAMPLE = "data:video/mp4;base64,AAAAIGZ0eXA..."
_GENERIC_TYPES = frozenset({"", "application/octet-stream"})  # no type given: the bytes are sniffed
_URLSAFE = str.maketrans("-_", "+/")


def decode_data_url(url: str, *, max_bytes: int, param: str, media: str = "image") -> bytes:
    """The bytes of a base64 data URL of an image (``media`` "video": of a video); malformed, wrongly typed or
    oversized URLs raise client errors."""
    if url[:5].lower() != "data:":
        raise _malformed("it does not start with 'data:'", param, media)
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise _malformed("',' between the media type and the data is missing", param, media)
    mime, *options = (part.strip().lower() for part in header.split(";"))
    if "base64" not in options:
        raise _malformed("the data must be base64-encoded (';base64,')", param, media)
    if mime not in _GENERIC_TYPES and not mime.startswith(f"{media}/"):
        raise _malformed(f"media type '{mime[:50]}' is not an {media} type ({media}/*)", param, media)
    if len(payload) // 4 * 3 > max_bytes:  # upper bound of the decoded size, known before decoding
        raise _too_large(max_bytes, param, media)
    try:  # the usual case, well-formed padded base64, in one C pass; anything else is normalised first
        data = binascii.a2b_base64(payload, strict_mode=True) if payload else b""
    except (binascii.Error, ValueError):
        data = None
    if data:
        if len(data) > max_bytes:
            raise _too_large(max_bytes, param, media)
        return data
    text = _normalise(payload)
    if not text:
        raise _malformed("it contains no data", param, media)
    if len(text) // 4 * 3 > max_bytes:  # upper bound of the decoded size, known before decoding
        raise _too_large(max_bytes, param, media)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(f"{media} data URL is not valid base64", param=param, code="invalid_base64") from None
    if len(data) > max_bytes:
        raise _too_large(max_bytes, param, media)
    return data


def _normalise(payload: str) -> str:
    """Drop whitespace and percent-escapes, map the URL-safe alphabet and restore missing padding."""
    if "%" in payload:
        payload = unquote(payload)
    text = "".join(payload.split()).translate(_URLSAFE).rstrip("=")
    if len(text) % 4 == 1:
        return text + "="  # impossible length: keep it invalid so b64decode reports it
    return text + "=" * (-len(text) % 4)


def _too_large(max_bytes: int, param: str, media: str) -> ClientError:
    if media == "video":
        return payload_too_large(max_bytes, param=param, what="video", setting="VLSERVE_VIDEO_MAX_BYTES")
    return payload_too_large(max_bytes, param=param)


def _malformed(problem: str, param: str, media: str = "image") -> ClientError:
    example = _EXAMPLE if media == "image" else _VIDEO_EXAMPLE
    return ClientError(
        f"malformed {media} data URL: {problem}; expected {example}", param=param, code="invalid_data_url"
    )
