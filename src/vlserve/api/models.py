"""GET /v1/models and /v1/models/{id} — the served model and its limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vlserve.api.state import StateDep
from vlserve.errors import NotFoundError
from vlserve.runtime import Runtime

router = APIRouter()


def _card(state: Runtime) -> dict[str, Any]:
    info = state.engine.info
    return {
        "id": info.id,
        "object": "model",
        "created": info.created,
        "owned_by": "vlserve",
        "architecture": info.architecture,
        "max_model_len": info.max_model_len,
        "max_images_per_request": info.max_images_per_request,
        "max_image_bytes": state.settings.max_image_bytes,
        "min_pixels": info.min_pixels,
        "max_pixels": info.max_pixels,
        "ready": state.engine.ready,
    }


@router.get("/v1/models")
async def list_models(state: StateDep) -> dict:
    """The model this server serves, with its context and image limits."""
    return {"object": "list", "data": [_card(state)]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, state: StateDep) -> dict:
    """The served model's card; ids may contain ``/`` (``Qwen/Qwen3-VL-30B-A3B-Instruct``)."""
    served = state.engine.info.id
    if model_id != served:
        raise NotFoundError(
            f"the model {model_id!r} does not exist; this server serves {served!r}",
            param="model",
            code="model_not_found",
        )
    return _card(state)
