"""POST /v1/completions — OpenAI legacy text completions, streaming or not (benchmarks such as guidellm use it).

The prompt is continued as raw text: no chat template, no images. Limits and errors are the chat
endpoint's: the model name, the context, the engine's refusals, the error envelope; so is the response cache.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.chat import SSE_HEADERS
from vlserve.api.completion_format import completion_chunks, completion_response
from vlserve.api.completion_protocol import CompletionRequest
from vlserve.api.request_fields import refuse_fields
from vlserve.api.request_limits import LimitsDep, check_prompt
from vlserve.api.sampling import completion_params, has_schemas
from vlserve.api.state import AnswersDep, RequestIdDep, caller_id
from vlserve.engine.base import EngineRequest, SamplingParams
from vlserve.errors import ClientError
from vlserve.service.cached import Ask

router = APIRouter()


@contextlib.contextmanager
def _named_prompt() -> Iterator[None]:
    """An engine names chat's ``messages`` when the input does not fit; here that input is ``prompt``."""
    try:
        yield
    except ClientError as exc:
        if exc.param == "messages":
            exc.param = "prompt"
        raise


@router.post("/v1/completions", response_model=None)
async def create_completion(
    body: CompletionRequest, answers: AnswersDep, limits: LimitsDep, request_id: RequestIdDep, raw: Request
) -> JSONResponse | StreamingResponse:
    """Continue a text prompt."""
    model = answers.service.check_model(body.model)
    refuse_fields(body.model_extra, "completions")
    check_prompt(body.prompt, body, limits)

    # A schema or grammar is checked in a thread (CPU work as long as it is); plain options on the event loop.
    def options() -> SamplingParams:
        return completion_params(body, max_depth=limits.max_json_depth)

    params = await asyncio.to_thread(options) if has_schemas(body) else options()
    echo = body.prompt if body.echo else ""
    token_ids = body.return_token_ids
    ask = Ask(
        "completion", EngineRequest((), prompt=body.prompt), params, body.stream, caller=caller_id(raw),
        cache_control=raw.headers.get("cache-control"),
    )  # fmt: skip
    with _named_prompt():
        answer = await cancel_on_disconnect(raw, answers.answer(ask))  # admitted before the prompt is tokenised
    if answer.deltas is not None:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        continuous_usage = bool(body.stream_options and body.stream_options.continuous_usage_stats)
        chunks = completion_chunks(
            answer.deltas, model=model, request_id=request_id, include_usage=include_usage, echo=echo,
            logprobs=params.logprobs, token_ids=token_ids, continuous_usage=continuous_usage,
        )  # fmt: skip
        return StreamingResponse(chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **answer.headers})
    assert answer.completion is not None
    result = completion_response(
        answer.completion, model=model, request_id=request_id, echo=echo, logprobs=params.logprobs, token_ids=token_ids
    )
    return JSONResponse(result, headers=answer.headers)
