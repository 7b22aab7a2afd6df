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
from vlserve.structured import OutputFormat, parse_response_format, parse_structured_outputs
from vlserve.structured.formats import check_schema

# vLLM removed these in 0.12 and now ignores them (HTTP 200, unconstrained output); vlserve says so instead.
_REFUSED_LEGACY = {
    "guided_regex": 'use structured_outputs: {"regex": ...}',
    "guided_choice": 'use structured_outputs: {"choice": [...]}',
    "guided_grammar": 'use structured_outputs: {"grammar": ...}',
    "guided_whitespace_pattern": "answers are compact JSON",
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


def has_schemas(request: ChatCompletionRequest | CompletionRequest) -> bool:
    """Whether the request carries schemas or grammars to check (an answer format, guided_json, structured_outputs,
    tools): CPU work as long as they are, for a worker thread; without any, reading the options costs microseconds."""
    answer_format = request.response_format
    if (answer_format is not None and answer_format.json_schema is not None) or request.structured_outputs is not None:
        return True
    return isinstance(request, ChatCompletionRequest) and (bool(request.tools) or request.guided_json is not None)


def output_format(request: ChatCompletionRequest | CompletionRequest, *, max_depth: int) -> OutputFormat | None:
    """The requested answer format: ``response_format``, vLLM's ``structured_outputs``, or (in a chat) vLLM's
    legacy ``guided_json`` translated; one of them at most, checked (CPU work as long as its schema or grammar:
    call this in a thread from async code when :func:`has_schemas`)."""
    guided_json = None
    if isinstance(request, ChatCompletionRequest):
        for name, instead in _REFUSED_LEGACY.items():
            if getattr(request, name) is not None:
                raise ClientError(
                    f"'{name}' is not supported (vLLM removed it in 0.12 and ignores it since); {instead}",
                    param=name,
                    code="unsupported_parameter",
                )
        guided_json = request.guided_json
    response_format = request.response_format
    output = parse_response_format(
        None if response_format is None else response_format.model_dump(), max_depth=max_depth
    )
    given = {"response_format": output, "guided_json": guided_json, "structured_outputs": request.structured_outputs}
    asked = [name for name, value in given.items() if value is not None]
    if len(asked) > 1:
        raise ClientError(f"send either {asked[0]} or {asked[1]}, not both", param=asked[1])
    if guided_json is not None:
        return _guided_json(guided_json, max_depth)
    if request.structured_outputs is not None:
        return parse_structured_outputs(request.structured_outputs, max_depth=max_depth)
    return output


def shared_params(request: SamplingOptions) -> SamplingParams:
    """The settings chat and text completions ask for in the same way."""
    if request.n != 1:
        raise ClientError("n > 1 is not supported; send separate requests", param="n")
    if request.stream_options is not None and not request.stream:
        raise ClientError("stream_options is only allowed when stream is true", param="stream_options")
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
        min_p=request.min_p or 0.0,
        stop_token_ids=tuple(request.stop_token_ids or ()),
        include_stop_str_in_output=request.include_stop_str_in_output,
        skip_special_tokens=request.skip_special_tokens,
        spaces_between_special_tokens=request.spaces_between_special_tokens,
        continuous_usage=bool(request.stream_options and request.stream_options.continuous_usage_stats),
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


def completion_params(request: CompletionRequest, *, max_depth: int) -> SamplingParams:
    """A text completion's settings: ``logprobs`` is the number of alternatives per token (0 to 5); its answer
    format checked (see :func:`output_format`: in a thread when :func:`has_schemas`)."""
    request.refuse_unsupported()
    return dataclasses.replace(
        shared_params(request),
        output=output_format(request, max_depth=max_depth),
        logprobs=request.logprobs is not None,
        top_logprobs=request.logprobs or 0,
    )
