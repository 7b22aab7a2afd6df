"""The one composition root: settings → engine, media loader, generation service, documents.

The app's lifespan and the CLI's ``--local`` paths all build their object graph here, so a server
and a one-off command run the same parts wired the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from vlserve.documents.service import DocumentService
from vlserve.engine import Engine, build_engine
from vlserve.errors import ServerError, sanitize_message
from vlserve.media import ImageFetcher, MediaLoader
from vlserve.service import GenerationService
from vlserve.settings import Settings

log = logging.getLogger("vlserve")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    generation: GenerationService
    documents: DocumentService | None = None
    load_error: str | None = None  # why the engine failed to start, sanitised for the health probes

    async def load(self) -> bool:
        """Start the engine (load and warm up), then the document worker; False if the engine failed."""
        try:
            await self.engine.start()
        except Exception as exc:  # reported by the health probes; a server stays up to say why
            self.load_error = sanitize_message(str(exc)) or type(exc).__name__
            log.exception("loading the model failed")
            return False
        if self.documents is not None:
            await self.documents.start_worker()
        return True


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, engine: Engine | None = None, *, documents: bool = True, load: bool = False
) -> AsyncIterator[Runtime]:
    """The object graph for ``settings``. The engine is built but not started (a server calls ``load`` in
    the background); with ``load``, it is started first and a failure raises (the CLI's ``--local``)."""
    served = engine or build_engine(settings)
    try:
        async with ImageFetcher(
            timeout=settings.url_fetch_timeout,
            max_redirects=settings.url_max_redirects,
            max_bytes=settings.max_image_bytes,
            allowlist=settings.url_allowlist,
        ) as fetcher:
            generation = GenerationService(
                served, MediaLoader(fetcher, settings.image_limits()), max_images=settings.max_images_per_request
            )
            jobs = await DocumentService.open(settings, generation) if documents else None
            runtime = Runtime(settings, served, generation, jobs)
            try:
                if load and not await runtime.load():
                    raise ServerError(f"the model could not be loaded: {runtime.load_error}")
                yield runtime
            finally:
                if jobs is not None:
                    await jobs.close()
    finally:
        await served.close()
