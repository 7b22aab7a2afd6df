"""Splitting OpenAI message content into text parts and image and video references, with clear errors.

The messages are already checked (api/message_protocol.py); their content parts are read here, as
api/content_schema.py declares them: text in every message, images and videos in user and tool messages only.
A video is refused here, before anything is fetched, when the server takes none (``VLSERVE_VIDEO=false``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vlserve.api.content_schema import IMAGE_PARTS, MEDIA_ROLES, TEXT_PARTS, VIDEO_PARTS
from vlserve.api.message_protocol import ChatMessage
from vlserve.engine.base import ChatTurn, ToolCall
from vlserve.errors import ClientError
from vlserve.media import MediaRef
from vlserve.media.sources import video_off

if TYPE_CHECKING:
    from vlserve.api.request_limits import RequestLimits


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


def _video_url(part: dict[str, Any], param: str) -> MediaRef:
    if part["type"] == "video_url":
        value = part.get("video_url")
        url = value.get("url") if isinstance(value, dict) else value
        param = f"{param}.video_url"
    else:  # Qwen style: {"type": "video", "video": "<url>"} or {"type": "video", "url": …}
        url = part.get("video") or part.get("url")
        param = f"{param}.video"
    if not isinstance(url, str) or not url:
        raise ClientError("a video part needs a non-empty URL (a data: URL or an http(s) URL)", param=param)
    return MediaRef(url.strip(), param, "video")


def _tool_calls(message: ChatMessage) -> tuple[ToolCall, ...]:
    """The calls an assistant message made (only assistant messages carry any: see api/message_protocol.py)."""
    return tuple(ToolCall(c.id, c.function.name, c.function.arguments or "{}") for c in message.tool_calls or ())


VIDEO_SETTING = "VLSERVE_MAX_VIDEOS_PER_REQUEST"
ENGINE_VIDEO_RULE = "the engine's --limit-mm-per-prompt"  # a managed vLLM told fewer videos through --vllm-args


def parse_messages(
    messages: Sequence[ChatMessage], *, max_images: int, max_videos: int = 0, video_rule: str = VIDEO_SETTING
) -> tuple[list[ChatTurn], list[MediaRef]]:
    """The turns (media as ``{"type": "image"}`` / ``{"type": "video"}`` placeholders) and the media they point
    at, in order of appearance; ``max_videos`` 0: video is off, and a video part is refused before anything
    fetches or decodes it; ``video_rule`` names what sets ``max_videos``."""
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
            if kind in IMAGE_PARTS + VIDEO_PARTS and message.role not in MEDIA_ROLES:
                raise ClientError(
                    f"a {message.role} message takes text only; images and videos go in user (or tool) messages",
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
            elif kind in VIDEO_PARTS:
                if not max_videos:
                    raise _no_video(f"{param}.type", video_rule)
                images.append(_video_url(part, param))
                parts.append({"type": "video"})
            else:
                known = ", ".join(TEXT_PARTS + IMAGE_PARTS + VIDEO_PARTS)
                raise ClientError(
                    f"unknown content part type {kind!r}; supported types are {known}",
                    param=f"{param}.type",
                    code="unsupported_content_type",
                )
        turns.append(ChatTurn(role, tuple(parts), calls, call_id))
    videos = sum(1 for ref in images if ref.kind == "video")
    if len(images) - videos > max_images:
        raise ClientError(
            f"the request has {len(images) - videos} images; at most {max_images} are allowed per request",
            param="messages",
            code="too_many_images",
        )
    if videos > max_videos > 0:
        raise _too_many_videos(videos, max_videos, video_rule, "messages")
    return turns, images


def refuse_videos(videos: int, limits: RequestLimits, param: str) -> None:
    """A clean 400 when ``videos`` is more than the request limits allow (none: video off)."""
    if not limits.max_videos:
        raise _no_video(param, limits.video_rule)
    if videos > limits.max_videos:
        raise _too_many_videos(videos, limits.max_videos, limits.video_rule, param)


def _too_many_videos(videos: int, limit: int, rule: str, param: str) -> ClientError:
    return ClientError(
        f"the request has {videos} videos; at most {limit} are allowed per request ({rule})",
        param=param,
        code="too_many_videos",
    )


def _no_video(param: str, rule: str) -> ClientError:
    if rule != ENGINE_VIDEO_RULE:
        return video_off(param)
    return ClientError(
        f"this server's engine takes no video ({rule} sets video to 0); send images instead",
        param=param,
        code="unsupported_content_type",
    )
