"""build_app(settings): composes routers, middleware and the lifespan; nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from vlserve import __version__
from vlserve.api import chat, completions, documents, health, models, unserved, vision
from vlserve.api.errors import install_error_handlers
from vlserve.engine import Engine
from vlserve.observability.request_id import RequestIdMiddleware
from vlserve.runtime import open_runtime
from vlserve.settings import Settings


def build_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, engine) as runtime:
            app.state.vlserve = runtime
            loading = asyncio.create_task(runtime.load(), name="vlserve-load")
            try:
                yield
            finally:
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading

    app = FastAPI(title="vlserve", version=__version__, lifespan=lifespan)
    # Pure-ASGI middleware, innermost first (each add_middleware wraps the ones before it).
    # [slot: quotas]
    # [slot: auth]
    # [slot: audit]
    # [slot: request limits]
    # [slot: head and cors]
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    for module in (chat, completions, vision, documents, models, health, unserved):
        app.include_router(module.router)
    return app
