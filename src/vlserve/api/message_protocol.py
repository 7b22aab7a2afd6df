"""The messages of a chat request: one model per role, as in OpenAI's reference, told apart by ``role``.

Validation and the OpenAPI schema come from these models: what each role requires (a system or user
message its content, a tool message the call it answers, an assistant message content or tool calls),
which role may carry tool calls, and the arguments of a call (a JSON object, as a string). Errors name the
field: a missing one is "'messages[1].tool_call_id' is required". Content parts stay plain objects that
api/content.py reads one by one (errors name the part); api/content_schema.py declares what it accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError

from vlserve import jsonlimits
from vlserve.api.content_schema import JSON_OBJECT_TEXT, MEDIA_PART, TEXT_PART

FUNCTION_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
ROLES = ("system", "developer", "user", "assistant", "tool")

# Content: a string, or a list of parts that stay plain objects (read by api/content.py). Instructions and
# answers are text; what a user or a tool sends may hold images and videos too.
TextContent = str | list[Annotated[dict[str, Any], WithJsonSchema(TEXT_PART)]]
Content = str | list[Annotated[dict[str, Any], WithJsonSchema(MEDIA_PART)]]


class CalledFunction(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)
    arguments: str = Field(
        description="The arguments as a JSON object, encoded as a string.",
        json_schema_extra=JSON_OBJECT_TEXT,
    )

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:  # depth-checked first: arguments nested thousands deep are refused, not a RecursionError
            arguments = jsonlimits.loads(value or "{}", jsonlimits.DEEPEST)
        except ValueError:  # not JSON, or too deep (JSONTooDeepError)
            arguments = None
        if not isinstance(arguments, dict):
            raise ValueError("a tool call's arguments must be a JSON object encoded as a string")
        return value


class MessageToolCall(BaseModel):
    """A call the assistant made, sent back in the conversation history."""

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: CalledFunction


class _Message(BaseModel):
    """What every message may carry; each role's model says what it requires."""

    model_config = ConfigDict(extra="allow")
    needs_content: ClassVar[bool] = True

    role: str
    tool_calls: list[MessageToolCall] | None = Field(
        default=None, description="Assistant messages only.", json_schema_extra={"maxItems": 0}
    )
    content: Content | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content_shape(cls, value: Any) -> Any:
        """A clear error for content of the wrong shape, rather than one per member of the union."""
        if value is None and cls.needs_content:
            raise ValueError("the message has no content")
        if value is not None and not isinstance(value, str | list):
            raise ValueError("content must be a string or a list of content parts")
        if isinstance(value, list) and not all(isinstance(part, dict) for part in value):
            raise ValueError("each content part must be an object with a 'type'")
        return value

    @field_validator("tool_calls")
    @classmethod
    def _assistant_only(cls, value: list[MessageToolCall] | None) -> list[MessageToolCall] | None:
        if value:
            raise ValueError("only assistant messages carry tool_calls")
        return value


class SystemMessage(_Message):
    """Instructions; developer is OpenAI's newer name for system and is read as one."""

    role: Literal["system", "developer"]
    content: TextContent


class UserMessage(_Message):
    role: Literal["user"]
    content: Content


class AssistantMessage(_Message):
    """An earlier answer: its text, the tool calls it made, or both."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
                {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array", "minItems": 1}}},
            ]
        }
    )
    needs_content: ClassVar[bool] = False

    role: Literal["assistant"]
    tool_calls: list[MessageToolCall] | None = None
    content: TextContent | None = Field(default=None, validate_default=True, description="Needed without tool_calls.")

    @field_validator("tool_calls")
    @classmethod
    def _assistant_only(cls, value: list[MessageToolCall] | None) -> list[MessageToolCall] | None:
        return value

    @field_validator("content")
    @classmethod
    def _content_or_calls(cls, value: TextContent | None, info: ValidationInfo) -> TextContent | None:
        if value is None and not info.data.get("tool_calls"):
            raise ValueError("the message has no content (an assistant message needs content or tool_calls)")
        return value


class ToolMessage(_Message):
    """A tool's result, answering one of the assistant's calls."""

    role: Literal["tool"]
    content: Content
    tool_call_id: str = Field(min_length=1, description="The id of the call this answers.")


def _untagged(value: Any, handler: Any) -> Any:
    """Validate one message; errors name its fields as the client wrote them (``messages[0].content``),
    without the role pydantic puts in between, and an unknown role is an error naming ``role``."""
    try:
        return handler(value)
    except ValidationError as exc:
        role = value.get("role") if isinstance(value, dict) else None
        errors: list[Any] = []
        for error in exc.errors(include_url=False):
            loc, kind, message = error["loc"], error["type"], error["msg"].removeprefix("Value error, ")
            if kind in ("union_tag_invalid", "union_tag_not_found"):
                found = f", got {role!r}" if role is not None else ""
                loc, message = ("role",), f"a message needs a role: one of {', '.join(ROLES)}{found}"
            elif kind == "model_attributes_type":
                message = "each message must be an object with a role and content"
            elif loc and loc[0] == role:
                loc = loc[1:]
            errors.append({"type": PydanticCustomError(kind, message), "loc": loc, "input": error["input"]})
        raise ValidationError.from_exception_data(exc.title, errors) from None


ChatMessage = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage,
    Field(discriminator="role"),
    WrapValidator(_untagged),
]
