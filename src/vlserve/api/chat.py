"""POST /v1/chat/completions — OpenAI-compatible chat, streaming or not."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.protocol import ChatCompletionRequest
from vlserve.api.state import ChatDep, RequestIdDep

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, chat: ChatDep, request_id: RequestIdDep, raw: Request
) -> JSONResponse | StreamingResponse:
    """Answer a chat whose messages may mix text and images."""
    chat.check_model(body.model)
    params = chat.sampling(body)
    prompt = await cancel_on_disconnect(raw, chat.prepare_chat(body))
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = await chat.stream(prompt, params, request_id, include_usage=include_usage)
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
    completion = await cancel_on_disconnect(raw, chat.complete(prompt, params))
    return JSONResponse(chat.chat_response(completion, request_id, token_ids=body.return_token_ids))
