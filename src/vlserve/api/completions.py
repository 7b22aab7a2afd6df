"""POST /v1/completions — OpenAI legacy text completions, streaming or not (benchmarks such as guidellm use it).

The prompt is continued as raw text: no chat template, no images. Limits and errors are the chat
endpoint's: the model name, the context, the engine's refusals, the error envelope.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.completion_format import completion_chunks, completion_response
from vlserve.api.completion_protocol import CompletionRequest
from vlserve.api.request_limits import LimitsDep, check_prompt
from vlserve.api.sampling import completion_params
from vlserve.api.state import GenerationDep, RequestIdDep
from vlserve.engine.base import EngineRequest
from vlserve.errors import ClientError

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
    body: CompletionRequest, service: GenerationDep, limits: LimitsDep, request_id: RequestIdDep, raw: Request
) -> JSONResponse | StreamingResponse:
    """Continue a text prompt."""
    model = service.check_model(body.model)
    check_prompt(body.prompt, body, limits)
    params = completion_params(body)
    echo = body.prompt if body.echo else ""
    token_ids = body.return_token_ids
    with _named_prompt(), service.admit() as slot:  # admitted before the prompt is tokenised
        prepared = await cancel_on_disconnect(raw, service.prepare(EngineRequest((), prompt=body.prompt)))
        if body.stream:
            deltas = await cancel_on_disconnect(raw, service.stream(prepared, params, slot))
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            chunks = completion_chunks(
                deltas, model=model, request_id=request_id, include_usage=include_usage, echo=echo,
                logprobs=params.logprobs, token_ids=token_ids,
            )  # fmt: skip
            return StreamingResponse(
                chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )
        completion = await cancel_on_disconnect(raw, service.complete(prepared, params))
    answer = completion_response(
        completion, model=model, request_id=request_id, echo=echo, logprobs=params.logprobs, token_ids=token_ids
    )
    return JSONResponse(answer)
