"""Request and response models of the OpenAI-compatible chat API, and the options text completions share."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vlserve.api.chat_rules import CHAT_RULES, NAMED_TOOL_CHOICE
from vlserve.api.content_schema import JSON_OBJECT_TEXT
from vlserve.api.message_protocol import FUNCTION_NAME, ChatMessage
from vlserve.api.structured_schema import STRUCTURED_OUTPUTS_SCHEMA

# A field holding a JSON Schema (a tool's parameters, a response format's schema): an object, checked against
# the metaschema of the draft it names (2020-12 unless its $schema says otherwise) and, for an answer
# format, compiled to a grammar; the metaschema itself is not repeated here.
JSON_SCHEMA = {"type": "object", "description": "A JSON Schema (draft 2020-12 unless its $schema names another)."}
# Refused by name with a 400 (api/refusals.py, api/sampling.py) rather than ignored: null or left out.
NOT_SERVED = {"type": "null", "description": "Not supported: a request that sets it is refused, naming it."}


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description=JSON_SCHEMA["description"])
    strict: bool | None = Field(default=None, description="Accepted; arguments always follow the schema.")


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False
    continuous_usage_stats: bool = Field(
        default=False, description="vLLM extension: usage so far on every chunk, not only at the end."
    )


class ResponseFormat(BaseModel):
    # Checked in vlserve.structured.formats (its errors quote the value sent); declared here.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "if": {"properties": {"type": {"const": "json_schema"}}},
            "then": {"required": ["json_schema"]},
        },
    )

    type: str = Field(json_schema_extra={"enum": ["text", "json_object", "json_schema"]})
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="With type json_schema: the answer's schema and its name.",
        json_schema_extra={
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "description": {"type": "string"},
                "schema": JSON_SCHEMA,
                "strict": {"type": ["boolean", "null"]},
            },
        },
    )


class SamplingOptions(BaseModel):
    """What chat and text completions share: the model, decoding settings and streaming.

    Undeclared keys are kept (``model_extra``) so that api/request_fields.py can refuse each by name: a field
    vlserve does not serve set to a value that matters, or a key neither OpenAI nor vLLM defines.
    """

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)
    seed: int | None = None
    stop: str | list[str] | None = Field(default=None, json_schema_extra={"maxItems": 16})
    n: int = Field(default=1, ge=1, description="Only 1: send separate requests.", json_schema_extra={"maximum": 1})
    stream: bool = False
    stream_options: StreamOptions | None = None
    return_token_ids: bool = Field(default=False, description="vLLM extension: include generated token ids.")
    # Honoured by the engines that implement them; any other engine refuses them with a 400 naming them.
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    logit_bias: dict[str, float] | None = Field(
        default=None,
        description="Token id (an integer, as a string) to a bias from -100 to 100.",
        json_schema_extra={
            "propertyNames": {"pattern": "^[0-9]+$"},
            "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
        },
    )
    ignore_eos: bool = False
    min_tokens: int = Field(default=0, ge=0)
    # vLLM's sampling extensions, with its names and defaults
    min_p: float | None = Field(default=None, ge=0.0, le=1.0, description="Drop tokens below min_p x the top one's.")
    stop_token_ids: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, max_length=64, description="End the answer at any of these token ids."
    )
    include_stop_str_in_output: bool = Field(default=False, description="Keep the stop string in the answer.")
    skip_special_tokens: bool = Field(default=True, description="Leave special tokens out of the text.")
    spaces_between_special_tokens: bool = True
    user: str | None = Field(default=None, description="Accepted; recorded nowhere, changes nothing.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 16:
            raise ValueError("at most 16 stop sequences are allowed")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _token_biases(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not token.isdigit():
                raise ValueError(f"keys must be token ids (integers as strings), got {token[:20]!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases must be between -100 and 100, got {bias} for token {token}")
        return value

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(SamplingOptions):
    model_config = ConfigDict(json_schema_extra={"allOf": CHAT_RULES})

    messages: list[ChatMessage] = Field(json_schema_extra={"minItems": 1})  # checked below, with a clear message
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="Needs logprobs: true.")
    tools: list[Tool] | None = Field(default=None, max_length=128, description="Each function named differently.")
    tool_choice: str | dict[str, Any] | None = Field(
        default=None,
        description='"none", "auto", "required" (needs tools) or {"type": "function", "function": {"name": …}} '
        "naming one of the tools",
        json_schema_extra={"anyOf": [{"enum": ["none", "auto", "required"]}, NAMED_TOOL_CHOICE, {"type": "null"}]},
    )
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(
        default=None,
        description='Variables for the checkpoint\'s chat template, e.g. {"enable_thinking": false}; names are '
        "identifiers, values JSON, the template's own inputs (messages, tools, ...) excluded.",
    )
    include_reasoning: bool = Field(default=True, description="false: leave a reasoning model's reasoning out.")
    # Informational in OpenAI's reference: accepted, change nothing.
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    # In OpenAI's reference but not served: refused by name (api/refusals.py) rather than ignored.
    audio: Any = Field(default=None, json_schema_extra=NOT_SERVED)
    modalities: list[str] | None = Field(
        default=None, description='Only ["text"].', json_schema_extra={"anyOf": [{"const": ["text"]}, {"type": "null"}]}
    )
    prediction: Any = Field(default=None, json_schema_extra=NOT_SERVED)
    reasoning_effort: Any = Field(default=None, json_schema_extra=NOT_SERVED)
    verbosity: Any = Field(default=None, json_schema_extra=NOT_SERVED)
    web_search_options: Any = Field(default=None, json_schema_extra=NOT_SERVED)
    functions: Any = Field(default=None, json_schema_extra=NOT_SERVED)
    function_call: Any = Field(default=None, json_schema_extra=NOT_SERVED)
    # vLLM's structured-output fields before 0.12 (later versions ignore them): translated or refused.
    guided_json: dict[str, Any] | str | None = Field(
        default=None,
        description="A JSON Schema, as an object or as its JSON text; not with a response_format.",
        json_schema_extra={"anyOf": [JSON_SCHEMA, JSON_OBJECT_TEXT, {"type": "null"}]},
    )
    guided_regex: str | None = Field(default=None, json_schema_extra=NOT_SERVED)
    guided_choice: list[str] | None = Field(default=None, json_schema_extra=NOT_SERVED)
    guided_grammar: str | None = Field(default=None, json_schema_extra=NOT_SERVED)
    guided_whitespace_pattern: str | None = Field(default=None, json_schema_extra=NOT_SERVED)
    guided_decoding_backend: str | None = Field(default=None, description="Accepted; vlserve picks the backend.")
    structured_outputs: dict[str, Any] | None = Field(default=None, json_schema_extra=STRUCTURED_OUTPUTS_SCHEMA)

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise ValueError("messages must contain at least one message")
        return value


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    ).model_dump()
