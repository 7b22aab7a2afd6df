"""GET /v1/models — the served model and its limits."""

from __future__ import annotations

from fastapi import APIRouter

from vlserve.api.state import StateDep

router = APIRouter()


@router.get("/v1/models")
async def list_models(state: StateDep) -> dict:
    """The model this server serves, with its context and image limits."""
    info = state.engine.info
    settings = state.settings
    return {
        "object": "list",
        "data": [
            {
                "id": info.id,
                "object": "model",
                "created": info.created,
                "owned_by": "vlserve",
                "architecture": info.architecture,
                "max_model_len": info.max_model_len,
                "max_images_per_request": info.max_images_per_request,
                "max_image_bytes": settings.max_image_bytes,
                "min_pixels": info.min_pixels,
                "max_pixels": info.max_pixels,
                "ready": state.engine.ready,
            }
        ],
    }
