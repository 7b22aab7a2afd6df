"""Splitting OpenAI message content into text parts and image references, with clear errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vlserve.api.protocol import ChatMessage
from vlserve.engine.base import ChatTurn, ToolCall
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


def _tool_calls(message: ChatMessage, i: int) -> tuple[ToolCall, ...]:
    """The calls an assistant message made, each with arguments that are a JSON object."""
    if message.tool_calls and message.role != "assistant":
        raise ClientError("only assistant messages carry tool_calls", param=f"messages[{i}].tool_calls")
    calls = []
    for j, call in enumerate(message.tool_calls or ()):
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise ClientError(
                "a tool call's arguments must be a JSON object encoded as a string",
                param=f"messages[{i}].tool_calls[{j}].function.arguments",
            )
        calls.append(ToolCall(call.id, call.function.name, call.function.arguments or "{}"))
    return tuple(calls)


def _tool_call_id(message: ChatMessage, i: int) -> str | None:
    if message.role == "tool" and not message.tool_call_id:
        raise ClientError("a tool message needs the tool_call_id it answers", param=f"messages[{i}].tool_call_id")
    return message.tool_call_id if message.role == "tool" else None


def parse_messages(messages: Sequence[ChatMessage], *, max_images: int) -> tuple[list[ChatTurn], list[MediaRef]]:
    turns: list[ChatTurn] = []
    images: list[MediaRef] = []
    for i, message in enumerate(messages):
        content = message.content
        role = "system" if message.role == "developer" else message.role
        calls, call_id = _tool_calls(message, i), _tool_call_id(message, i)
        if content is None and calls:
            content = ""
        if content is None:
            raise ClientError(f"message {i} has no content", param=f"messages[{i}].content")
        if isinstance(content, str):
            parts = ({"type": "text", "text": content},) if content or not calls else ()
            turns.append(ChatTurn(role, parts, calls, call_id))
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
        turns.append(ChatTurn(role, tuple(parts), calls, call_id))
    if len(images) > max_images:
        raise ClientError(
            f"the request has {len(images)} images; at most {max_images} are allowed per request",
            param="messages",
            code="too_many_images",
        )
    return turns, images
