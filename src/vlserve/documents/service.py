"""The documents feature of one server, assembled: the job store, submission checks, the page worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from vlserve.documents.intake import DocumentIntake, Submission, Upload, parse_schema
from vlserve.documents.runner import DocumentRunner
from vlserve.documents.sources import PageSource
from vlserve.errors import ClientError, NotFoundError
from vlserve.service import GenerationService
from vlserve.settings import Settings
from vlserve.store.db import make_engine, make_sessions, migrate
from vlserve.store.jobs import JobStore
from vlserve.store.models import ENDED, Document

log = logging.getLogger("vlserve.documents")


class DocumentService:
    def __init__(self, settings: Settings, generation: GenerationService) -> None:
        self._settings = settings
        self._generation = generation
        self._db = make_engine(settings.database())
        self.store = JobStore(make_sessions(self._db), keep_files=settings.document_keep_files)
        self._intake = DocumentIntake(self.store, settings)
        source = PageSource(self.store, settings.data_dir / "documents", settings.image_limits())
        self.runner = DocumentRunner(self.store, generation, source, settings) if settings.document_worker else None

    @classmethod
    async def open(cls, settings: Settings, generation: GenerationService) -> DocumentService:
        """Migrate the database to the newest schema, then build the service."""
        await asyncio.to_thread(migrate, settings.database())
        return cls(settings, generation)

    async def start_worker(self) -> None:
        if self.runner is not None:
            await self.runner.start()
            log.info("document worker %s: %d page(s) at a time", self.runner.worker, self._settings.page_concurrency())

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        self._db.dispose()

    async def submit(self, uploads: Sequence[Upload], form: Submission) -> tuple[Document, str]:
        output = parse_schema(form.json_schema)
        if output is not None:  # a schema the grammar cannot enforce is refused now, not on every page
            try:
                await self._generation.engine.check_output(output)
            except ClientError as exc:  # the same problem, named by this endpoint's field
                raise ClientError(exc.message, param="json_schema") from None
        doc, secret = await asyncio.to_thread(self._intake.submit, uploads, form, output)
        if self.runner is not None:
            self.runner.wake()
        return doc, secret

    async def get(self, document_id: str) -> Document:
        doc = await asyncio.to_thread(self.store.get, document_id)
        if doc is None:
            raise NotFoundError(f"no document job {document_id!r}", param="id", code="document_not_found")
        return doc

    async def recent(self, *, limit: int, status: str | None, after: str | None) -> list[Document]:
        return await asyncio.to_thread(self.store.recent, limit=limit, status=status, before=after)

    async def cancel(self, document_id: str) -> Document:
        doc = await self.get(document_id)
        if doc.status in ENDED or not await asyncio.to_thread(self.store.cancel, document_id):
            error = ClientError(f"document job {document_id} has already ended ({doc.status})", param="id")
            error.status_code, error.code = 409, "already_ended"
            raise error
        return await self.get(document_id)
