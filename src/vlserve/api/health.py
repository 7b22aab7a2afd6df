"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vlserve.api.state import StateDep

router = APIRouter()


@router.get("/health/live")
async def live(state: StateDep) -> JSONResponse:
    """200 while the process can serve; 503 once loading the model has failed (restart me)."""
    if state.load_error:
        return JSONResponse({"status": "failed", "error": state.load_error}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/health/ready")
async def ready(state: StateDep) -> JSONResponse:
    """200 only after the model is loaded and a warm-up generation has run, and while the engine can serve:
    503 ``stalled`` while requests wait on it and no token has come out for the stall timeout."""
    if state.engine.ready:
        stall = state.generation.stalls.check()
        if stall is not None:
            return JSONResponse(
                {"status": "stalled", "detail": stall.detail}, status_code=503, headers={"Retry-After": "5"}
            )
        return JSONResponse({"status": "ready", "model": state.engine.info.id})
    if state.load_error:
        return JSONResponse({"status": "failed", "error": state.load_error}, status_code=503)
    detail = state.engine.status().detail
    body = {"status": "loading", "detail": detail} if detail else {"status": "loading"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


@router.get("/health", include_in_schema=False)
async def health(state: StateDep) -> JSONResponse:
    """Readiness under the path vLLM-style probes and clients (guidellm, a vlserve in front) expect."""
    return await ready(state)
