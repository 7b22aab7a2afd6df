"""POST /v1/chat/vision — the seed articles' endpoint: multipart ``prompt`` + ``image_file`` → JSON."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.chat_format import usage_body
from vlserve.api.state import GenerationDep, RequestIdDep, StateDep
from vlserve.engine.base import ChatTurn, EngineRequest, MediaItem, SamplingParams
from vlserve.errors import ClientError
from vlserve.media.images import decode_image
from vlserve.media.limits import payload_too_large

router = APIRouter()


async def _read_upload(upload: UploadFile, limit: int, param: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise payload_too_large(limit, param=param)
    return data


@router.post("/v1/chat/vision")
async def chat_vision(
    state: StateDep,
    service: GenerationDep,
    request_id: RequestIdDep,
    raw: Request,
    prompt: Annotated[str, Form(min_length=1)],
    image_file: Annotated[list[UploadFile], File()],
    model: Annotated[str | None, Form()] = None,
    max_tokens: Annotated[int | None, Form(ge=1)] = None,
    temperature: Annotated[float | None, Form(ge=0.0, le=2.0)] = None,
    seed: Annotated[int | None, Form()] = None,
) -> dict:
    """Ask one question about one or more uploaded images."""
    served = service.check_model(model)
    settings = state.settings
    if len(image_file) > settings.max_images_per_request:
        raise ClientError(
            f"the request has {len(image_file)} images; at most {settings.max_images_per_request} are allowed",
            param="image_file",
            code="too_many_images",
        )
    limits = settings.image_limits()
    images = []
    for i, upload in enumerate(image_file):
        param = f"image_file[{i}]"
        data = await _read_upload(upload, settings.max_image_bytes, param)
        images.append(MediaItem.decoded(await asyncio.to_thread(decode_image, data, limits, param=param)))
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    request = EngineRequest((ChatTurn.user(prompt, len(images)),), tuple(images))
    prepared = await cancel_on_disconnect(raw, service.prepare(request))
    completion = await cancel_on_disconnect(raw, service.complete(prepared, params))
    return {
        "result": completion.text,
        "model": served,
        "finish_reason": completion.finish_reason,
        "usage": usage_body(completion.usage),
        "trace_id": request_id,
    }
