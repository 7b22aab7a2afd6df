"""Splitting OpenAI message content into text parts and image references, with clear errors.

The messages are already checked (api/message_protocol.py); their content parts are read here, as
api/content_schema.py declares them: text in every message, images in user and tool messages only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlserve.api.content_schema import IMAGE_PARTS, MEDIA_ROLES, TEXT_PARTS
from vlserve.api.message_protocol import ChatMessage
from vlserve.engine.base import ChatTurn, ToolCall
from vlserve.errors import ClientError
from vlserve.media import MediaRef


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


def _tool_calls(message: ChatMessage) -> tuple[ToolCall, ...]:
    """The calls an assistant message made (only assistant messages carry any: see api/message_protocol.py)."""
    return tuple(ToolCall(c.id, c.function.name, c.function.arguments or "{}") for c in message.tool_calls or ())


def parse_messages(messages: Sequence[ChatMessage], *, max_images: int) -> tuple[list[ChatTurn], list[MediaRef]]:
    turns: list[ChatTurn] = []
    images: list[MediaRef] = []
    for i, message in enumerate(messages):
        content = message.content
        role = "system" if message.role == "developer" else message.role
        calls = _tool_calls(message)
        call_id = message.tool_call_id if message.role == "tool" else None
        if content is None:  # an assistant message with tool calls only
            content = ""
        if isinstance(content, str):
            parts = ({"type": "text", "text": content},) if content or not calls else ()
            turns.append(ChatTurn(role, parts, calls, call_id))
            continue
        parts: list[dict[str, str]] = []
        for j, part in enumerate(content):
            param = f"messages[{i}].content[{j}]"
            kind = part.get("type")
            if kind in IMAGE_PARTS and message.role not in MEDIA_ROLES:
                raise ClientError(
                    f"a {message.role} message takes text only; images go in user (or tool) messages",
                    param=f"{param}.type",
                    code="unsupported_content_type",
                )
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
                    f"unknown content part type {kind!r}; supported types are {', '.join(TEXT_PARTS + IMAGE_PARTS)}",
                    param=f"{param}.type",
                    code="unsupported_content_type",
                )
        turns.append(ChatTurn(role, tuple(parts), calls, call_id))
    if len(images) > max_images:
        raise ClientError(
            f"the request has {len(images)} images; at most {max_images} are allowed per request",
            param="messages",
            code="too_many_images",
        )
    return turns, images
