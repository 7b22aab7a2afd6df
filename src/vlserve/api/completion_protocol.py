"""The request of the OpenAI legacy text completions API (``/v1/completions``), as benchmarks send it.

One text prompt per request, answered from where the text ends (no chat template). What vlserve does
not implement is refused by name rather than ignored: several prompts or token-id prompts, ``suffix``,
and ``echo`` with ``logprobs`` (that would need the prompt's own log probabilities).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator

from vlserve.api.chat_rules import FORMAT_OR_STRUCTURED_OUTPUTS
from vlserve.api.protocol import ResponseFormat, SamplingOptions
from vlserve.api.structured_schema import STRUCTURED_OUTPUTS_SCHEMA
from vlserve.errors import ClientError

DEFAULT_MAX_TOKENS = 16  # OpenAI's and vLLM's default for text completions

# What refuse_unsupported and _one_prompt refuse is declared in the schema too.
_ONE_PROMPT = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 1},
    ]
}
_NOT_ECHO_WITH_LOGPROBS = {
    "not": {"required": ["echo", "logprobs"], "properties": {"echo": {"const": True}, "logprobs": {"type": "integer"}}}
}


class CompletionRequest(SamplingOptions):
    model_config = ConfigDict(json_schema_extra={"allOf": [_NOT_ECHO_WITH_LOGPROBS, FORMAT_OR_STRUCTURED_OUTPUTS]})

    prompt: Annotated[str, WithJsonSchema(_ONE_PROMPT)] = Field(description="One prompt: a string, or a list of one.")
    max_tokens: int | None = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5, description="The top alternatives per token, 0 to 5.")
    suffix: str | None = Field(
        default=None, description="Not supported: empty or null.", json_schema_extra={"maxLength": 0}
    )
    # The answer's format, as in a chat (one of the two at most): checked in vlserve.structured.
    response_format: ResponseFormat | None = None
    structured_outputs: dict[str, Any] | None = Field(default=None, json_schema_extra=STRUCTURED_OUTPUTS_SCHEMA)

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) != 1 or not isinstance(value[0], str):
                raise ValueError(
                    "send one prompt per request, as a string (or a list of one string); "
                    "several prompts and token-id prompts are not supported"
                )
            value = value[0]
        if value == "":
            raise ValueError("the prompt must not be empty")
        return value

    def refuse_unsupported(self) -> None:
        """ClientError naming the first option this server does not implement."""
        if self.suffix:
            raise _unsupported("suffix", "text after the insertion point is not supported; remove 'suffix'")
        if self.echo and self.logprobs is not None:
            raise _unsupported("echo", "echo with logprobs (the prompt's log probabilities) is not supported")


def _unsupported(param: str, message: str) -> ClientError:
    return ClientError(message, param=param, code="unsupported_parameter")
