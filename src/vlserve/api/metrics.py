"""GET /metrics: the server's Prometheus metrics in the text exposition format; GET /metrics/engine: the
managed vLLM child's own metrics, passed through (both scope ``metrics``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from vlserve.api.state import StateDep
from vlserve.engine.base import ExposesMetrics
from vlserve.errors import NotFoundError
from vlserve.observability.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/metrics/engine", include_in_schema=False)
async def engine_metrics(state: StateDep) -> Response:
    """The engine's own metrics (vLLM's scheduler queue, KV cache, prefix-cache hits), as it serves them.
    Only the managed vLLM engine has them here: a remote fleet's engines are scraped at their own /metrics."""
    if not isinstance(state.engine, ExposesMetrics):
        raise NotFoundError(
            "only the managed vLLM engine (--engine vllm) exposes engine metrics; this server's are at /metrics, "
            "and a remote fleet's engines serve their own",
            code="engine_metrics_unavailable",
        )
    scraped = await state.engine.engine_metrics()
    return Response(scraped.body, headers={"Content-Type": scraped.content_type})
