"""Splitting OpenAI message content into text parts and image references, with clear errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlserve.api.protocol import ChatMessage
from vlserve.engine.base import ChatTurn
from vlserve.errors import ClientError
from vlserve.media import MediaRef

KNOWN_PARTS = ("text", "image_url", "image")


def _image_url(part: dict[str, Any], param: str) -> MediaRef:
    if part["type"] == "image_url":
        value = part.get("image_url")
        url = value.get("url") if isinstance(value, dict) else value
        param = f"{param}.image_url"
    else:  # transformers / Qwen style: {"type": "image", "image": "<url>"} or {"type": "image", "url": …}
        url = part.get("image") or part.get("url")
        param = f"{param}.image"
    if not isinstance(url, str) or not url:
        raise ClientError("an image part needs a non-empty URL (a data: URL or an http(s) URL)", param=param)
    return MediaRef(url.strip(), param)


def parse_messages(messages: Sequence[ChatMessage], *, max_images: int) -> tuple[list[ChatTurn], list[MediaRef]]:
    turns: list[ChatTurn] = []
    images: list[MediaRef] = []
    for i, message in enumerate(messages):
        content = message.content
        role = "system" if message.role == "developer" else message.role
        if content is None:
            raise ClientError(f"message {i} has no content", param=f"messages[{i}].content")
        if isinstance(content, str):
            turns.append(ChatTurn(role, ({"type": "text", "text": content},)))
            continue
        parts: list[dict[str, str]] = []
        for j, part in enumerate(content):
            param = f"messages[{i}].content[{j}]"
            kind = part.get("type")
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise ClientError("a text part needs a string field 'text'", param=f"{param}.text")
                parts.append({"type": "text", "text": text})
            elif kind in ("image_url", "image"):
                images.append(_image_url(part, param))
                parts.append({"type": "image"})
            else:
                raise ClientError(
                    f"unknown content part type {kind!r}; supported types are {', '.join(KNOWN_PARTS)}",
                    param=f"{param}.type",
                    code="unsupported_content_type",
                )
        turns.append(ChatTurn(role, tuple(parts)))
    if len(images) > max_images:
        raise ClientError(
            f"the request has {len(images)} images; at most {max_images} are allowed per request",
            param="messages",
            code="too_many_images",
        )
    return turns, images
