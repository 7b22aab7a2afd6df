"""GET /metrics: the server's Prometheus metrics in the text exposition format (scope ``metrics``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from vlserve.api.state import StateDep
from vlserve.observability.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
