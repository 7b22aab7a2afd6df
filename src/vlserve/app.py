"""build_app(settings): composes routers, middleware and the lifespan; nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from vlserve import __version__
from vlserve.api import chat, documents, health, models, vision
from vlserve.api.chat_service import ChatService
from vlserve.api.errors import install_error_handlers
from vlserve.api.state import AppState
from vlserve.documents.service import DocumentService
from vlserve.engine import Engine, build_engine
from vlserve.errors import sanitize_message
from vlserve.media import ImageFetcher
from vlserve.observability.request_id import RequestIdMiddleware
from vlserve.settings import Settings

log = logging.getLogger("vlserve")


async def _load(state: AppState) -> None:
    try:
        await state.engine.start()
    except Exception as exc:  # reported by the health probes; the process stays up to say why
        state.load_error = sanitize_message(str(exc)) or type(exc).__name__
        log.exception("loading the model failed")
        return
    if state.documents is not None:
        await state.documents.start_worker()


def build_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = engine or build_engine(settings)
        async with ImageFetcher(
            timeout=settings.url_fetch_timeout,
            max_redirects=settings.url_max_redirects,
            max_bytes=settings.max_image_bytes,
            allowlist=settings.url_allowlist,
        ) as fetcher:
            chat_service = ChatService(served, fetcher, settings)
            documents = await DocumentService.open(settings, chat_service)
            state = AppState(settings, served, chat_service, documents=documents)
            app.state.vlserve = state
            loading = asyncio.create_task(_load(state), name="vlserve-load")
            try:
                yield
            finally:
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading
                await documents.close()
                await served.close()

    app = FastAPI(title="vlserve", version=__version__, lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    for module in (chat, vision, documents, models, health):
        app.include_router(module.router)
    return app
