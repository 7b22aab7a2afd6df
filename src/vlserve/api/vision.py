"""POST /v1/chat/vision — the seed articles' endpoint: multipart ``prompt`` + ``image_file`` → JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.chat_format import usage_body
from vlserve.api.openapi import AT_LEAST_ONE, IMAGE_TYPES, multipart_files
from vlserve.api.request_limits import RequestLimits, check_text
from vlserve.api.state import GenerationDep, RequestIdDep, StateDep
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.errors import ClientError
from vlserve.media.limits import payload_too_large
from vlserve.media.sources import EncodedImage

router = APIRouter()


async def _read_upload(upload: UploadFile, limit: int, param: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise payload_too_large(limit, param=param)
    return data


@router.post("/v1/chat/vision", openapi_extra=multipart_files("image_file", IMAGE_TYPES))
async def chat_vision(
    state: StateDep,
    service: GenerationDep,
    request_id: RequestIdDep,
    raw: Request,
    prompt: Annotated[str, Form(min_length=1)],
    image_file: Annotated[list[UploadFile], File(json_schema_extra=AT_LEAST_ONE)],
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
    limits = RequestLimits.of(settings)
    check_text(len(prompt), "prompt", limits)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    with service.admit():  # before any image is decoded
        uploads = [
            EncodedImage(await _read_upload(upload, settings.max_image_bytes, f"image_file[{i}]"), f"image_file[{i}]")
            for i, upload in enumerate(image_file)
        ]
        images = await service.decode_images(uploads, max_request_pixels=limits.max_request_pixels)
        request = EngineRequest((ChatTurn.user(prompt, len(images)),), images)
        prepared = await cancel_on_disconnect(raw, service.prepare(request))
        completion = await cancel_on_disconnect(raw, service.complete(prepared, params))
    return {
        "result": completion.text,
        "model": served,
        "finish_reason": completion.finish_reason,
        "usage": usage_body(completion.usage),
        "trace_id": request_id,
    }
