"""A chat request's tools and tool choice, checked before any work, as the engine request expects them."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vlserve.api.protocol import ChatCompletionRequest, NamedToolChoice
from vlserve.errors import ClientError
from vlserve.structured.formats import MAX_SCHEMA_CHARS, check_schema

_CHOICES = ("none", "auto", "required")


def _tool_choice(value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if value is None or value in _CHOICES:
        return value
    try:
        return NamedToolChoice.model_validate(value).model_dump()
    except ValidationError:
        raise ClientError(
            f'tool_choice must be one of {", ".join(_CHOICES)} or {{"type": "function", "function": {{"name": …}}}}',
            param="tool_choice",
        ) from None


def tool_fields(body: ChatCompletionRequest, *, max_depth: int) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` for :class:`EngineRequest`; ClientError naming
    what is wrong: a parameter schema that is not JSON Schema (or too deep, or with a reference outside it),
    two functions of one name, a tool choice that needs tools or names a function that is not among them,
    tools together with response_format. The schemas are CPU work: call this in a thread from async code."""
    tools = tuple(tool.model_dump(exclude_none=True) for tool in body.tools or ())
    names = [tool["function"]["name"] for tool in tools]
    room = MAX_SCHEMA_CHARS  # the tools' parameter schemas together
    for i, tool in enumerate(tools):
        if "parameters" in tool["function"]:
            param = f"tools[{i}].function.parameters"
            room -= check_schema(tool["function"]["parameters"], param, max_depth=max_depth, room=room)
        if names.index(tool["function"]["name"]) != i:
            raise ClientError(
                f"two tools are named {names[i]!r}; names must differ",
                param=f"tools[{i}].function.name",
                code="duplicate_tool_name",
            )
    choice = _tool_choice(body.tool_choice)
    if isinstance(choice, dict):
        if choice["function"]["name"] not in names:
            raise ClientError(
                f"tool_choice names the function {choice['function']['name']!r}, which is not in tools",
                param="tool_choice.function.name",
                code="unknown_tool",
            )
    elif choice == "required" and not tools:
        raise ClientError('tool_choice "required" needs tools', param="tool_choice")
    formatted = body.response_format is not None and body.response_format.type != "text"
    if tools and choice != "none" and (formatted or body.guided_json is not None):
        raise ClientError(
            "send either tools or a response_format, not both (a tool's parameters are a JSON Schema already)",
            param="response_format",
        )
    if tools and choice != "none" and body.structured_outputs is not None:  # its format would rule out tool calls
        raise ClientError("send either tools or structured_outputs, not both", param="structured_outputs")
    return {"tools": tools, "tool_choice": choice, "parallel_tool_calls": body.parallel_tool_calls is not False}
