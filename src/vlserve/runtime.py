"""The one composition root: settings → engine, media loader, generation service, documents.

The app's lifespan and the CLI's ``--local`` paths all build their object graph here, so a server
and a one-off command run the same parts wired the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy.orm import sessionmaker

from vlserve.cache import MemoryStore, open_store
from vlserve.documents.service import DocumentService
from vlserve.engine import Engine, build_engine
from vlserve.errors import ServerError, sanitize_message
from vlserve.media import DecodeBudget, ImageCache, ImageFetcher, MediaLoader
from vlserve.media.decode_budget import return_freed_images
from vlserve.observability.gpu import watch_gpus
from vlserve.observability.metrics import EngineGauges, Metrics
from vlserve.observability.redis_health import RedisHealth
from vlserve.security.audit import AuditStore, purge_periodically
from vlserve.security.audit_refusals import RefusalTally
from vlserve.security.audit_writer import AuditWriter
from vlserve.security.keys import KeyStore, ensure_admin_key
from vlserve.security.quotas import OwnerQuota
from vlserve.security.ratelimit import Limiter, LocalLimiter, open_limiter
from vlserve.service import GenerationService
from vlserve.service.cached import CachedGeneration
from vlserve.settings import Settings
from vlserve.store.db import make_engine, make_sessions, migrate

log = logging.getLogger("vlserve")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    generation: GenerationService
    keys: KeyStore
    answers: CachedGeneration  # chat and text completions through the response cache
    documents: DocumentService | None = None
    audit: AuditStore | None = None  # None: audit records are off (VLSERVE_AUDIT=0)
    audit_writer: AuditWriter | None = None  # writes the audit middleware's records in batches
    refusals: RefusalTally | None = None  # audits requests refused for want of a valid key, per client and minute
    load_error: str | None = None  # why the engine failed to start, sanitised for the health probes
    limiter: Limiter = field(default_factory=LocalLimiter)  # per-key limits: in-process, or Redis (redis_url)
    draining: bool = False  # SIGTERM: no new work; the document worker claims no new page
    metrics: Metrics = field(default_factory=lambda: Metrics(per_key=False))  # what GET /metrics shows
    decode_budget: DecodeBudget | None = None  # pixels of images being decoded at once, server-wide

    def gauges(self) -> EngineGauges:
        """Readiness and load now, for the metrics."""
        status = self.engine.status()
        stalls = self.generation.stalls
        stalled = stalls.check() is not None
        return EngineGauges(
            ready=self.engine.ready and self.load_error is None and not stalled,
            queue_depth=status.queue_depth,
            running=status.running,
            admitted=self.generation.admission.in_use,
            capacity=self.engine.capacity,
            stalled=stalled,
            stalls=stalls.stalls,
        )

    async def load(self) -> bool:
        """Start the engine (load and warm up), then the document worker; False if the engine failed."""
        try:
            await self.engine.start()
        except Exception as exc:  # reported by the health probes; a server stays up to say why
            self.load_error = sanitize_message(str(exc)) or type(exc).__name__
            log.exception("loading the model failed")
            return False
        if self.documents is not None and not self.draining:
            await self.documents.start_worker()
        return True

    def stop_taking_work(self, deadline: float) -> None:
        """Draining (SIGTERM): the document worker claims no new page (or is never started); the pages in
        hand may finish until ``deadline`` (event-loop time) and the rest are handed back when it stops."""
        self.draining = True
        if self.documents is not None and self.documents.runner is not None:
            self.documents.runner.stop_claiming(deadline)


@contextlib.asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[sessionmaker]:
    """Sessions on the configured database, migrated to the newest schema first (once, before any store)."""
    url = settings.database()
    await asyncio.to_thread(migrate, url)
    db = make_engine(url)
    try:
        yield make_sessions(db)
    finally:
        db.dispose()


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, engine: Engine | None = None, *, documents: bool = True, load: bool = False
) -> AsyncIterator[Runtime]:
    """The object graph for ``settings``. The engine is built but not started (a server calls ``load`` in
    the background); with ``load``, it is started first and a failure raises (the CLI's ``--local``)."""
    served = engine or build_engine(settings)
    metrics = Metrics(per_key=settings.auth_required())
    redis_health = RedisHealth()  # reported to by the rate limiter and the response cache
    try:
        async with (
            open_database(settings) as sessions,
            ImageFetcher(
                timeout=settings.url_fetch_timeout,
                max_redirects=settings.url_max_redirects,
                max_bytes=settings.max_image_bytes,
                allowlist=settings.url_allowlist,
            ) as fetcher,
            open_limiter(settings, health=redis_health) as limiter,
            open_store(
                settings, health=redis_health, on_error=lambda: metrics.cache_errors.labels("redis").inc()
            ) as store,
        ):
            image_cache = ImageCache(settings.image_cache_max_bytes, settings.image_cache_ttl_s)
            return_freed_images()  # a decoded image's memory goes back to the system when it is freed
            decode_budget = DecodeBudget.sized(  # pixels of untrusted images decoded at once, every endpoint
                settings.decode_budget_pixels,
                max_image_pixels=settings.max_image_pixels,
                wait_s=settings.decode_budget_wait_s,
            )
            media = MediaLoader(
                fetcher, settings.image_limits(), cache=image_cache, budget=decode_budget, video=settings.video_limits()
            )
            generation = GenerationService(
                served, media, max_images=settings.max_images_per_request, stall_timeout_s=settings.stall_timeout_s,
                default_max_tokens=settings.default_max_tokens,
            )  # fmt: skip
            keys = KeyStore(sessions, settings)
            await asyncio.to_thread(ensure_admin_key, keys, settings)
            quota = OwnerQuota(limiter, keys.principal)
            jobs = (
                DocumentService(settings, generation, sessions=sessions, quota=quota, decode_budget=decode_budget)
                if documents
                else None
            )
            audit = AuditStore(sessions)
            writer = AuditWriter(audit) if settings.audit else None
            refusals = RefusalTally(writer.submit) if writer is not None else None
            answers = CachedGeneration.of(settings, generation, store)
            runtime = Runtime(
                settings, served, generation, keys, answers, jobs, audit=audit if settings.audit else None,
                audit_writer=writer, refusals=refusals, limiter=limiter, metrics=metrics,
                decode_budget=decode_budget,
            )  # fmt: skip
            metrics.watch_engine(runtime.gauges)
            metrics.watch_cache(
                (lambda: store.entries) if isinstance(store, MemoryStore) else None,
                (lambda: redis_health.up) if settings.redis_url else None,
            )
            watch_gpus(metrics.registry)
            if jobs is not None and jobs.runner is not None:
                jobs.runner.on_page = metrics.observe_page
                if writer is not None:
                    jobs.runner.on_audit = writer.submit
            image_cache.on_lookup = metrics.observe_image_cache
            if writer is not None and refusals is not None:
                writer.start()
                refusals.start()
            purging = asyncio.create_task(
                purge_periodically(audit, settings.audit_retention_days), name="vlserve-audit-purge"
            )
            try:
                if load and not await runtime.load():
                    raise ServerError(f"the model could not be loaded: {runtime.load_error}")
                yield runtime
            finally:
                purging.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purging
                if jobs is not None:
                    await jobs.close()
                if writer is not None and refusals is not None:  # the last records, before the database closes
                    await refusals.close()
                    await writer.close()
    finally:
        await served.close()
