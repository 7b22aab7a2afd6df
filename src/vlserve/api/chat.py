"""POST /v1/chat/completions — OpenAI-compatible chat, streaming or not."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.chat_format import chat_chunks, chat_response
from vlserve.api.content import parse_messages
from vlserve.api.protocol import ChatCompletionRequest
from vlserve.api.refusals import refuse_unserved
from vlserve.api.request_limits import LimitsDep, RequestLimits, check_chat
from vlserve.api.sampling import sampling_params
from vlserve.api.state import GenerationDep, RequestIdDep
from vlserve.api.tools import tool_fields
from vlserve.engine.base import EngineRequest, Prepared
from vlserve.service import GenerationService

router = APIRouter()


async def _prepare(service: GenerationService, body: ChatCompletionRequest, limits: RequestLimits) -> Prepared:
    tools = tool_fields(body)
    turns, refs = parse_messages(body.messages, max_images=service.max_images)
    media = await service.load_media(refs, max_request_pixels=limits.max_request_pixels)
    return await service.prepare(EngineRequest(tuple(turns), media, **tools))


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, service: GenerationDep, limits: LimitsDep, request_id: RequestIdDep, raw: Request
) -> JSONResponse | StreamingResponse:
    """Answer a chat whose messages may mix text and images."""
    model = service.check_model(body.model)
    refuse_unserved(body)
    check_chat(body, limits)
    params = sampling_params(body)
    with service.admit() as slot:  # before any image is fetched or decoded, or the prompt built
        prepared = await cancel_on_disconnect(raw, _prepare(service, body, limits))
        if body.stream:
            deltas = await cancel_on_disconnect(raw, service.stream(prepared, params, slot))
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            chunks = chat_chunks(
                deltas, model=model, request_id=request_id, include_usage=include_usage,
                token_ids=body.return_token_ids, logprobs=params.logprobs,
            )  # fmt: skip
            return StreamingResponse(
                chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )
        completion = await cancel_on_disconnect(raw, service.complete(prepared, params))
    answer = chat_response(
        completion, model=model, request_id=request_id, token_ids=body.return_token_ids, logprobs=params.logprobs
    )
    return JSONResponse(answer)
