"""POST /v1/chat/completions — OpenAI-compatible chat, streaming or not, through the response cache."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.chat_format import chat_chunks, chat_response
from vlserve.api.content import parse_messages
from vlserve.api.protocol import ChatCompletionRequest
from vlserve.api.refusals import refuse_unserved
from vlserve.api.request_fields import refuse_fields
from vlserve.api.request_limits import LimitsDep, check_chat
from vlserve.api.sampling import has_schemas, sampling_params
from vlserve.api.state import AnswersDep, RequestIdDep, caller_id
from vlserve.api.template_kwargs import chat_template_kwargs
from vlserve.api.tools import tool_fields
from vlserve.engine.base import EngineRequest, SamplingParams
from vlserve.service.cached import Ask

router = APIRouter()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, answers: AnswersDep, limits: LimitsDep, request_id: RequestIdDep, raw: Request
) -> JSONResponse | StreamingResponse:
    """Answer a chat whose messages may mix text and images."""
    service = answers.service
    model = service.check_model(body.model)
    refuse_unserved(body)
    refuse_fields(body.model_extra, "chat")
    check_chat(body, limits)
    template_kwargs = chat_template_kwargs(body.chat_template_kwargs)

    # The answer format's and the tools' schemas are checked in a thread: CPU work as long as they are. A request
    # without any is read on the event loop: a hop to a busy thread pool would be most of what refusing it costs.
    def options() -> tuple[SamplingParams, dict]:
        depth = limits.max_json_depth
        return sampling_params(body, max_depth=depth), tool_fields(body, max_depth=depth)

    params, tools = await asyncio.to_thread(options) if has_schemas(body) else options()
    turns, refs = parse_messages(
        body.messages, max_images=service.max_images, max_videos=limits.max_videos, video_rule=limits.video_rule
    )
    engine_request = EngineRequest(tuple(turns), **tools, chat_template_kwargs=template_kwargs)
    ask = Ask(
        "chat", engine_request, params, body.stream, refs, caller=caller_id(raw),
        cache_control=raw.headers.get("cache-control"), max_request_pixels=limits.max_request_pixels,
    )  # fmt: skip
    answer = await cancel_on_disconnect(raw, answers.answer(ask))  # admission, images, prompt, engine
    if answer.deltas is not None:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        continuous_usage = bool(body.stream_options and body.stream_options.continuous_usage_stats)
        chunks = chat_chunks(
            answer.deltas, model=model, request_id=request_id, include_usage=include_usage,
            token_ids=body.return_token_ids, logprobs=params.logprobs, continuous_usage=continuous_usage,
            include_reasoning=body.include_reasoning,
        )  # fmt: skip
        return StreamingResponse(chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **answer.headers})
    assert answer.completion is not None
    body_json = chat_response(
        answer.completion, model=model, request_id=request_id, token_ids=body.return_token_ids,
        logprobs=params.logprobs, include_reasoning=body.include_reasoning,
    )  # fmt: skip
    return JSONResponse(body_json, headers=answer.headers)
