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
    "min_p",
    "stop_token_ids",
    "include_stop_str_in_output",
    "skip_special_tokens",
    "spaces_between_special_tokens",
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
        "min_p": params.min_p > 0.0,
        "stop_token_ids": bool(params.stop_token_ids),
        "include_stop_str_in_output": params.include_stop_str_in_output,
        "skip_special_tokens": not params.skip_special_tokens,  # the default skips them: keeping them is the use
        "spaces_between_special_tokens": not params.spaces_between_special_tokens,
    }
    return [name for name in FEATURES if used[name]]


def refuse_unsupported(
    request: EngineRequest, params: SamplingParams, *, supported: frozenset[str], engine: str
) -> None:
    """ClientError naming the first parameter this request uses that ``engine`` does not implement, or the
    first of vLLM's sampling extensions out of its range (:func:`check_sampling_extensions`)."""
    for name in requested_features(request, params):
        if name not in supported:
            raise ClientError(
                f"'{name}' is not supported by the {engine} engine; remove it from the request",
                param=name,
                code="unsupported_parameter",
            )
    check_sampling_extensions(params)


def refuse_videos(request: EngineRequest, limit: int | None, *, engine: str) -> None:
    """ClientError naming the first video part beyond ``limit`` videos (None: no limit of the engine's own)."""
    if limit is None:
        return
    seen = 0
    for index, turn in enumerate(request.turns):
        for j, part in enumerate(turn.parts):
            if part["type"] != "video":
                continue
            seen += 1
            if seen > limit:
                what = "takes no video" if limit == 0 else f"takes at most {limit} videos per request"
                raise ClientError(
                    f"the {engine} engine {what}; send images instead",
                    param=f"messages[{index}].content[{j}].video_url",
                    code="unsupported_content_type" if limit == 0 else "too_many_videos",
                )


MAX_STOP_TOKEN_IDS = 64


def check_sampling_extensions(params: SamplingParams, vocab_size: int | None = None) -> None:
    """ClientError when min_p is outside [0, 1], or stop_token_ids has more than MAX_STOP_TOKEN_IDS ids or an
    id outside the vocabulary (negative; with ``vocab_size`` known, not below it), as vLLM refuses them."""
    if not 0.0 <= params.min_p <= 1.0:
        raise ClientError(f"min_p must be between 0 and 1, got {params.min_p}", param="min_p")
    ids = params.stop_token_ids
    if len(ids) > MAX_STOP_TOKEN_IDS:
        raise ClientError(
            f"stop_token_ids has {len(ids)} ids; at most {MAX_STOP_TOKEN_IDS} are allowed", param="stop_token_ids"
        )
    outside = sorted(t for t in ids if t < 0 or (vocab_size is not None and t >= vocab_size))
    if outside:
        vocabulary = "" if vocab_size is None else f" (0-{vocab_size - 1})"
        raise ClientError(
            f"stop_token_ids names token id {outside[0]}, outside this model's vocabulary{vocabulary}",
            param="stop_token_ids",
            code="token_out_of_vocabulary",
        )
