"""Limits on a parsed request that cost nothing to check: JSON depth, message count, text length.

They run before admission and long before tokenising, so a request too deep, too long or with too
many messages is a 400 naming the field and the setting in microseconds, however large it is. Depth
follows the server's one rule (:mod:`vlserve.jsonlimits`), counted here from each free-form field so
that the error names it; the body as a whole was checked before it was parsed (:mod:`.json_depth`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from vlserve.api.content import ENGINE_VIDEO_RULE, VIDEO_SETTING
from vlserve.api.protocol import ChatCompletionRequest
from vlserve.errors import ClientError, ContextLengthError
from vlserve.jsonlimits import deeper_than, too_deep
from vlserve.settings import Settings


@dataclass(frozen=True)
class RequestLimits:
    max_json_depth: int
    max_messages: int
    max_prompt_chars: int
    max_request_pixels: int
    max_videos: int = 0  # videos per request; 0: video is off (VLSERVE_VIDEO=false) or the engine takes none
    video_rule: str = VIDEO_SETTING  # what sets max_videos, for the error that refuses one too many

    @classmethod
    def of(cls, settings: Settings, engine_videos: int | None = None) -> RequestLimits:
        """The settings' limits; ``engine_videos``, the engine's own cap on videos (a managed vLLM told fewer
        through ``--vllm-args``), lowers the video limit so that a video beyond it is refused before decoding."""
        videos, rule = (settings.max_videos_per_request if settings.video else 0), VIDEO_SETTING
        if engine_videos is not None and engine_videos < videos:
            videos, rule = engine_videos, ENGINE_VIDEO_RULE
        return cls(
            settings.max_json_depth, settings.max_messages, settings.max_prompt_chars, settings.max_request_pixels,
            videos, rule,
        )  # fmt: skip


async def get_limits(request: Request) -> RequestLimits:
    runtime = request.app.state.vlserve
    return RequestLimits.of(runtime.settings, runtime.engine.info.max_videos_per_request)


LimitsDep = Annotated[RequestLimits, Depends(get_limits)]


def check_depth(value: Any, param: str, limits: RequestLimits) -> None:
    if deeper_than(value, limits.max_json_depth):
        raise too_deep(param, limits.max_json_depth)


def check_text(chars: int, param: str, limits: RequestLimits) -> None:
    """Refuse more text than ``max_prompt_chars`` before anything tokenises it."""
    if chars > limits.max_prompt_chars:
        raise ContextLengthError(
            f"the request has {chars} characters of text, more than the limit of {limits.max_prompt_chars} "
            "characters (VLSERVE_MAX_PROMPT_CHARS)",
            param=param,
        )


def _extras(model: BaseModel | None, param: str) -> Iterator[tuple[str, Any]]:
    """The fields a client sent that the model does not declare (``metadata`` and the like)."""
    for name, value in ((model.model_extra or {}) if model is not None else {}).items():
        yield (f"{param}.{name}" if param else name), value


def _free_form(body: ChatCompletionRequest) -> Iterator[tuple[str, Any]]:
    """Every part of a chat request whose shape the client chooses, with the param naming it."""
    yield from _extras(body, "")
    yield "metadata", body.metadata
    yield "chat_template_kwargs", body.chat_template_kwargs
    for i, message in enumerate(body.messages):
        yield f"messages[{i}].content", message.content
        yield from _extras(message, f"messages[{i}]")
    for i, tool in enumerate(body.tools or ()):
        yield f"tools[{i}].function.parameters", tool.function.parameters
    yield "tool_choice", body.tool_choice
    if body.response_format is not None:
        yield "response_format.json_schema", body.response_format.json_schema
    yield from _extras(body.response_format, "response_format")
    yield "guided_json", body.guided_json
    yield "structured_outputs", body.structured_outputs


def _message_chars(body: ChatCompletionRequest) -> int:
    total = 0
    for message in body.messages:
        if isinstance(message.content, str):
            total += len(message.content)
        elif message.content is not None:
            total += sum(len(p["text"]) for p in message.content if isinstance(p.get("text"), str))
        total += sum(len(call.function.arguments or "") for call in message.tool_calls or ())
    return total


def check_chat(body: ChatCompletionRequest, limits: RequestLimits) -> None:
    """400 naming the field and the setting when a chat request is too deep, too long or too many messages."""
    if len(body.messages) > limits.max_messages:
        raise ClientError(
            f"the request has {len(body.messages)} messages, more than the limit of {limits.max_messages} "
            "(VLSERVE_MAX_MESSAGES)",
            param="messages",
            code="too_many_messages",
        )
    for param, value in _free_form(body):
        check_depth(value, param, limits)
    check_text(_message_chars(body), "messages", limits)


def check_prompt(text: str, extras: BaseModel, limits: RequestLimits, *, param: str = "prompt") -> None:
    """The same checks for a text prompt and the request's undeclared fields."""
    for name, value in _extras(extras, ""):
        check_depth(value, name, limits)
    check_text(len(text), param, limits)
