"""POST /v1/chat/vision — the seed articles' endpoint: multipart ``prompt`` + ``image_file`` (and/or
``video_file``: mp4, WebM or mov) → JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.chat_format import usage_body
from vlserve.api.content import refuse_videos
from vlserve.api.openapi import IMAGE_TYPES, multipart_files
from vlserve.api.request_limits import RequestLimits, check_text
from vlserve.api.state import GenerationDep, RequestIdDep, StateDep
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.errors import ClientError
from vlserve.media.limits import payload_too_large
from vlserve.media.sources import EncodedImage
from vlserve.settings import Settings

router = APIRouter()

VIDEO_TYPES = ("video/mp4", "video/webm", "video/quicktime")
_FILES = multipart_files("image_file", IMAGE_TYPES)
_FILES["requestBody"]["content"]["multipart/form-data"]["encoding"].update(
    multipart_files("video_file", VIDEO_TYPES)["requestBody"]["content"]["multipart/form-data"]["encoding"]
)
# Merged next to the body's $ref (OpenAPI 3.1 allows siblings): at least one file of either kind.
_FILES["requestBody"]["content"]["multipart/form-data"]["schema"] = {
    "anyOf": [{"required": ["image_file"]}, {"required": ["video_file"]}]
}


async def _read_upload(upload: UploadFile, limit: int, param: str, *, video: bool = False) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        if video:
            raise payload_too_large(limit, param=param, what="video", setting="VLSERVE_VIDEO_MAX_BYTES")
        raise payload_too_large(limit, param=param)
    return data


def _check_counts(images: int, videos: int, settings: Settings, limits: RequestLimits) -> None:
    """At least one file, and no more images or videos than the settings (and the engine) allow."""
    if not images and not videos:
        raise ClientError("an image_file or a video_file is required (at least one file)", param="image_file")
    if images > settings.max_images_per_request:
        raise ClientError(
            f"the request has {images} images; at most {settings.max_images_per_request} are allowed",
            param="image_file",
            code="too_many_images",
        )
    if videos:
        refuse_videos(videos, limits, "video_file")


@router.post("/v1/chat/vision", openapi_extra=_FILES)
async def chat_vision(
    state: StateDep,
    service: GenerationDep,
    request_id: RequestIdDep,
    raw: Request,
    prompt: Annotated[str, Form(min_length=1)],
    image_file: Annotated[list[UploadFile] | None, File(description="Images (at least one file in all).")] = None,
    video_file: Annotated[list[UploadFile] | None, File(description="Videos: mp4, WebM or mov.")] = None,
    model: Annotated[str | None, Form()] = None,
    max_tokens: Annotated[int | None, Form(ge=1)] = None,
    temperature: Annotated[float | None, Form(ge=0.0, le=2.0)] = None,
    seed: Annotated[int | None, Form()] = None,
) -> dict:
    """Ask one question about one or more uploaded images or videos."""
    served = service.check_model(model)
    settings = state.settings
    image_file, video_file = image_file or [], video_file or []
    limits = RequestLimits.of(settings, state.engine.info.max_videos_per_request)
    _check_counts(len(image_file), len(video_file), settings, limits)
    check_text(len(prompt), "prompt", limits)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    with service.admit():  # before any image is decoded
        uploads = [
            EncodedImage(await _read_upload(upload, settings.max_image_bytes, f"image_file[{i}]"), f"image_file[{i}]")
            for i, upload in enumerate(image_file)
        ]
        for i, upload in enumerate(video_file):
            data = await _read_upload(upload, settings.video_max_bytes, f"video_file[{i}]", video=True)
            uploads.append(EncodedImage(data, f"video_file[{i}]", "video"))
        media = await service.decode_images(uploads, max_request_pixels=limits.max_request_pixels)
        parts = (*({"type": item.kind} for item in media), {"type": "text", "text": prompt})  # images, then videos
        request = EngineRequest((ChatTurn("user", parts),), media)
        prepared = await cancel_on_disconnect(raw, service.prepare(request))
        completion = await cancel_on_disconnect(raw, service.complete(prepared, params))
    return {
        "result": completion.text,
        "model": served,
        "finish_reason": completion.finish_reason,
        "usage": usage_body(completion.usage),
        "trace_id": request_id,
    }
