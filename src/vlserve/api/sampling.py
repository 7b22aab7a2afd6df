"""An OpenAI request's options → the engine's SamplingParams, legacy vLLM fields translated or refused.

Chat and text completions share every decoding setting (:func:`shared_params`); they differ only in
how the token limit, the answer format and log probabilities are asked for.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from vlserve.api.completion_protocol import CompletionRequest
from vlserve.api.protocol import ChatCompletionRequest, SamplingOptions
from vlserve.engine.base import SamplingParams
from vlserve.errors import ClientError
from vlserve.jsonlimits import JSONTooDeepError, loads, too_deep
from vlserve.structured import OutputFormat, parse_response_format
from vlserve.structured.formats import check_schema

# vLLM removed these in 0.12 and now ignores them (HTTP 200, unconstrained output); vlserve says so instead.
_REFUSED_LEGACY = {
    "guided_regex": "use response_format with a json_schema whose string property has a 'pattern'",
    "guided_choice": 'use response_format with a json_schema {"enum": [...]}',
    "guided_grammar": "use response_format with a json_schema",
    "guided_whitespace_pattern": "answers are compact JSON",
    "structured_outputs": "use response_format with a json_schema",
}


def _guided_json(value: dict[str, Any] | str, max_depth: int) -> OutputFormat:
    if isinstance(value, str):
        try:
            value = loads(value, max_depth)
        except JSONTooDeepError:
            raise too_deep("guided_json", max_depth) from None
        except json.JSONDecodeError as exc:
            raise ClientError(f"guided_json is not valid JSON: {exc.msg}", param="guided_json") from None
    check_schema(value, "guided_json", max_depth=max_depth)
    return OutputFormat.of("guided_json", value, max_depth)


def has_schemas(request: ChatCompletionRequest) -> bool:
    """Whether the request carries JSON Schemas to check (an answer format, guided_json, tools): CPU work as
    long as they are, for a worker thread; without any, reading the request's options costs microseconds."""
    answer_format = request.response_format
    schema = answer_format is not None and answer_format.json_schema is not None
    return bool(request.tools) or request.guided_json is not None or schema


def output_format(request: ChatCompletionRequest, *, max_depth: int) -> OutputFormat | None:
    """The requested answer format: ``response_format``, or vLLM's legacy ``guided_json`` translated; its
    schema checked (CPU work as long as the schema: call this in a thread from async code)."""
    for name, instead in _REFUSED_LEGACY.items():
        if getattr(request, name) is not None:
            raise ClientError(
                f"'{name}' is not supported (vLLM removed it in 0.12 and ignores it since); {instead}",
                param=name,
                code="unsupported_parameter",
            )
    response_format = request.response_format
    output = parse_response_format(
        None if response_format is None else response_format.model_dump(), max_depth=max_depth
    )
    if request.guided_json is None:
        return output
    if output is not None:
        raise ClientError("send either response_format or guided_json, not both", param="guided_json")
    return _guided_json(request.guided_json, max_depth)


def shared_params(request: SamplingOptions) -> SamplingParams:
    """The settings chat and text completions ask for in the same way."""
    if request.n != 1:
        raise ClientError("n > 1 is not supported; send separate requests", param="n")
    return SamplingParams(
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=None if request.top_k is None else max(request.top_k, 0),
        seed=request.seed,
        stop=request.stop_sequences(),
        min_tokens=request.min_tokens,
        ignore_eos=request.ignore_eos,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        repetition_penalty=1.0 if request.repetition_penalty is None else request.repetition_penalty,
        logit_bias={int(token): bias for token, bias in (request.logit_bias or {}).items()},
        return_token_ids=request.return_token_ids,
    )


def sampling_params(request: ChatCompletionRequest, *, max_depth: int) -> SamplingParams:
    """A chat's settings, its answer format checked (see :func:`output_format`: call this in a thread)."""
    if request.top_logprobs and not request.logprobs:
        raise ClientError("top_logprobs needs logprobs: true", param="top_logprobs")
    return dataclasses.replace(
        shared_params(request),
        max_tokens=request.max_completion_tokens or request.max_tokens,
        output=output_format(request, max_depth=max_depth),
        logprobs=bool(request.logprobs),
        top_logprobs=request.top_logprobs or 0,
    )


def completion_params(request: CompletionRequest) -> SamplingParams:
    """A text completion's settings: ``logprobs`` is the number of alternatives per token (0 to 5)."""
    request.refuse_unsupported()
    return dataclasses.replace(
        shared_params(request), logprobs=request.logprobs is not None, top_logprobs=request.logprobs or 0
    )
