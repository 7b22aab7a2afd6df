"""build_app(settings): composes routers, middleware and the lifespan; nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from vlserve import __version__
from vlserve.api import chat, completions, docs, documents, health, metrics, models, playground, unserved, vision
from vlserve.api.admission_gate import AdmissionGate
from vlserve.api.body_limit import BodyLimitMiddleware
from vlserve.api.cors import cors_options
from vlserve.api.errors import install_error_handlers
from vlserve.api.json_depth import JSONDepthMiddleware
from vlserve.api.methods import HeadMiddleware
from vlserve.api.openapi import install_openapi
from vlserve.engine import Engine
from vlserve.observability.access_log import AccessLogMiddleware
from vlserve.observability.metrics_middleware import MetricsMiddleware
from vlserve.observability.request_id import RequestIdMiddleware
from vlserve.runtime import open_runtime
from vlserve.security.audit import AuditMiddleware
from vlserve.security.auth import AuthMiddleware
from vlserve.security.quotas import QuotaMiddleware
from vlserve.settings import Settings


def build_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    tracing = None
    if settings.otlp_endpoint is not None:  # OpenTelemetry is imported only when spans are exported
        from vlserve.observability.tracing import Tracing
        from vlserve.observability.tracing_middleware import TracingMiddleware

        tracing = Tracing(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        traced = contextlib.nullcontext() if tracing is None else tracing.running()  # spans flushed last
        async with traced, open_runtime(settings, engine) as runtime:
            app.state.vlserve = runtime
            loading = asyncio.create_task(runtime.load(), name="vlserve-load")
            try:
                yield
            finally:
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading

    app = FastAPI(
        title="vlserve",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py with local assets
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    # Pure-ASGI middleware, innermost first (each add_middleware wraps the ones before it).
    app.add_middleware(JSONDepthMiddleware, settings=settings)  # a JSON body too deep never reaches the parser
    app.add_middleware(AdmissionGate)  # a generation request holds a place with the engine, or is refused at once
    app.add_middleware(QuotaMiddleware)  # inside auth: limits the key auth found
    app.add_middleware(AuthMiddleware, settings=settings)
    app.add_middleware(BodyLimitMiddleware, settings=settings)  # bodies counted as they arrive
    app.add_middleware(HeadMiddleware)  # HEAD runs the GET, without its body
    # Outside auth, the body limit and HEAD: refused requests (401, 413) are recorded, HEAD as HEAD.
    if settings.metrics:
        app.add_middleware(MetricsMiddleware)  # inside audit: reads the same RequestRecord
    app.add_middleware(AuditMiddleware, settings=settings)
    if (cors := cors_options(settings)) is not None:  # outside the rest: preflights are answered first
        app.add_middleware(CORSMiddleware, **cors)
    if settings.access_log:
        app.add_middleware(AccessLogMiddleware, settings=settings)  # outside the rest: every request, its id
    if tracing is not None:  # just inside the id: continues the client's trace, sees every final status
        app.add_middleware(TracingMiddleware, tracing=tracing, keep_content=settings.audit and settings.audit_content)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    for module in (chat, completions, vision, documents, models, health, unserved):
        app.include_router(module.router)
    if settings.metrics:  # VLSERVE_METRICS=0: no /metrics route (404) and no metrics middleware
        app.include_router(metrics.router)
    if settings.docs:
        app.include_router(docs.router)
    if settings.playground:  # VLSERVE_PLAYGROUND=0: / and /web/ answer 404
        app.include_router(playground.router)
    install_openapi(app, settings)
    return app
