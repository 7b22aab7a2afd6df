"""Every request parameter is honoured or refused: what a request asks for beyond plain decoding.

A backend names the features it implements; a request using any other one is refused with a 400
naming the parameter, before anything is generated, instead of being answered as if it were absent.
"""

from __future__ import annotations

from vlserve.engine.base import EngineRequest, SamplingParams
from vlserve.errors import ClientError

FEATURES = (
    "tools",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "ignore_eos",
    "min_tokens",
)
ALL_FEATURES = frozenset(FEATURES)


def requested_features(request: EngineRequest, params: SamplingParams) -> list[str]:
    """The optional features this request uses, by parameter name (defaults are not a use)."""
    used = {
        "tools": request.calls_tools,
        "logprobs": params.logprobs,
        "top_logprobs": params.top_logprobs > 0,
        "presence_penalty": params.presence_penalty != 0.0,
        "frequency_penalty": params.frequency_penalty != 0.0,
        "repetition_penalty": params.repetition_penalty != 1.0,
        "logit_bias": bool(params.logit_bias),
        "ignore_eos": params.ignore_eos,
        "min_tokens": params.min_tokens > 0,
    }
    return [name for name in FEATURES if used[name]]


def refuse_unsupported(
    request: EngineRequest, params: SamplingParams, *, supported: frozenset[str], engine: str
) -> None:
    """ClientError naming the first parameter this request uses that ``engine`` does not implement."""
    for name in requested_features(request, params):
        if name not in supported:
            raise ClientError(
                f"'{name}' is not supported by the {engine} engine; remove it from the request",
                param=name,
                code="unsupported_parameter",
            )
