"""The documents feature of one server, assembled: the job store, submission checks, the page worker."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

from sqlalchemy.orm import sessionmaker

from vlserve.documents.intake import DocumentIntake, Submission, Upload, parse_schema
from vlserve.documents.renderer import PdfRenderer
from vlserve.documents.runner import DocumentRunner
from vlserve.documents.sources import PageSource
from vlserve.errors import ClientError, NotFoundError
from vlserve.media.decode_budget import DecodeBudget
from vlserve.security.principal import Principal
from vlserve.security.quotas import OwnerQuota
from vlserve.service import GenerationService
from vlserve.settings import Settings
from vlserve.store.jobs import JobStore, UnknownCursorError
from vlserve.store.models import ENDED, Document

log = logging.getLogger("vlserve.documents")


def owner_filter(principal: Principal | None) -> str | None:
    """Whose jobs a caller sees: its own (a key), or every job (an admin key, or auth off: None)."""
    return None if principal is None or principal.allows("admin") else principal.key_id


class DocumentService:
    """Jobs are owned by the key that submitted them: a key sees, lists and cancels only its own (another key's
    job is "not found", like a missing one); an admin key and, with auth off, everyone see every job."""

    def __init__(
        self,
        settings: Settings,
        generation: GenerationService,
        *,
        sessions: sessionmaker,
        quota: OwnerQuota | None = None,  # the owner keys' tokens per day, charged for every page
        decode_budget: DecodeBudget | None = None,  # the server's pixels decoded at once (None: not limited)
    ) -> None:
        self._settings = settings
        self._generation = generation
        self.store = JobStore(sessions, keep_files=settings.document_keep_files)
        self._intake = DocumentIntake(self.store, settings)
        self._renderer = PdfRenderer(settings.pdf_workers)
        source = PageSource(
            self.store, settings.data_dir / "documents", settings.image_limits(), decode_budget, self._renderer
        )
        worker = settings.document_worker
        self.runner = DocumentRunner(self.store, generation, source, settings, quota) if worker else None

    async def start_worker(self) -> None:
        if self.runner is not None:
            await self.runner.start()
            log.info("document worker %s: %d page(s) at a time", self.runner.worker, self._settings.page_concurrency())

    async def close(self) -> None:
        try:
            if self.runner is not None:
                await self.runner.stop()
        finally:  # always: its worker processes would hold the server's exit (a database gone at stop, say)
            await asyncio.to_thread(self._renderer.close)

    async def submit(
        self, uploads: Sequence[Upload], form: Submission, principal: Principal | None = None
    ) -> tuple[Document, str]:
        output = await asyncio.to_thread(parse_schema, form.json_schema, max_depth=self._settings.max_json_depth)
        if output is not None:  # a schema the grammar cannot enforce is refused now, not on every page
            try:
                await self._generation.engine.check_output(output)
            except ClientError as exc:  # the same problem, named by this endpoint's field
                raise ClientError(exc.message, param="json_schema", code=exc.code) from None
        owned = dataclasses.replace(form, owner=None if principal is None else principal.key_id)
        doc, secret = await asyncio.to_thread(self._intake.submit, uploads, owned, output)
        if self.runner is not None:
            self.runner.wake()
        return doc, secret

    async def get(self, document_id: str, principal: Principal | None = None) -> Document:
        doc = await asyncio.to_thread(self.store.get, document_id, owner=owner_filter(principal))
        if doc is None:
            raise NotFoundError(f"no document job {document_id!r}", param="id", code="document_not_found")
        return doc

    async def recent(
        self, *, limit: int, status: str | None, after: str | None, principal: Principal | None = None
    ) -> list[Document]:
        owner = owner_filter(principal)
        try:
            return await asyncio.to_thread(self.store.recent, limit=limit, status=status, before=after, owner=owner)
        except UnknownCursorError:  # well formed (the route checks the pattern) but naming no job of the caller
            raise NotFoundError(
                f"'after' must be the id of a document job from an earlier page; there is no job {after!r}",
                param="after",
                code="invalid_cursor",
            ) from None

    async def cancel(self, document_id: str, principal: Principal | None = None) -> Document:
        doc = await self.get(document_id, principal)
        if doc.status in ENDED or not await asyncio.to_thread(self.store.cancel, document_id):
            error = ClientError(f"document job {document_id} has already ended ({doc.status})", param="id")
            error.status_code, error.code = 409, "already_ended"
            raise error
        if self.runner is not None:  # its pages in hand here stop now; another server's within its poll interval
            self.runner.abort(document_id)
        return await self.get(document_id, principal)
