"""The audit trail: one database record per API request, queued when its response has ended and written
in batches by :class:`~vlserve.security.audit_writer.AuditWriter`.

A record keeps who (key id, client address), what (method, endpoint, model, the document job it named
or created), how it ended (status, tokens, latency) and the trace id that ties it to the logs and the
``x-request-id`` header, plus the SHA-256 of every image. Prompt text and image bytes are kept only with
``VLSERVE_AUDIT_CONTENT=1``. The middleware wraps authentication, so refused requests are recorded too:
a 403 and a 401 with a revoked or expired key name the key; 401s are tallied per client and minute
(:mod:`~vlserve.security.audit_refusals`), so a flood of them cannot fill the table. The health probes
are not recorded. Each document page the worker reads is a record of its own (method ``PAGE``), with
the tokens it used, charged to the job's key. Records older than ``VLSERVE_AUDIT_RETENTION_DAYS`` are
deleted every hour.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from vlserve.observability.accounting import RequestRecord
from vlserve.observability.response_watch import ResponseWatch
from vlserve.security.auth import REFUSED_KEY, is_open
from vlserve.security.principal import principal_of
from vlserve.settings import Settings
from vlserve.store.db import utcnow
from vlserve.store.models import AuditRecord

log = logging.getLogger("vlserve.audit")

PURGE_EVERY_S = 3600.0


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    key_id: str | None
    method: str
    endpoint: str
    status: int
    latency_ms: int
    trace_id: str
    client: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    image_hashes: list[str] = field(default_factory=list)
    content: dict | None = None  # {"texts": [...], "images": [base64, ...]}, only with audit_content
    resource: str | None = None  # the document job a request named or created (doc_…), a page (doc_…/pages/N)
    count: int | None = None  # requests this record stands for (refusals without a valid key); None: one

    @classmethod
    def of_page(
        cls, document_id: str, page_number: int, *, owner: str | None, status: int, record: RequestRecord,
        seconds: float,
    ) -> AuditEntry:  # fmt: skip
        """The record of one document page the worker read (or tried to): the tokens every attempt used, charged
        to the key that owns the job; ``status`` 200 read, 422 unreadable, 429 budget spent, 499 aborted."""
        return cls(
            at=utcnow() - timedelta(seconds=seconds),
            key_id=owner,
            method="PAGE",
            endpoint=PAGE_ENDPOINT,
            status=status,
            latency_ms=round(seconds * 1000),
            trace_id="-",
            model=record.model,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            resource=f"{document_id}/pages/{page_number}",
        )


PAGE_ENDPOINT = "/v1/documents/{document_id}/pages/{page_number}"  # where a page's audit record says it was read


def _row(entry: AuditEntry) -> AuditRecord:
    return AuditRecord(
        at=entry.at,
        key_id=entry.key_id,
        method=entry.method[:8],
        endpoint=entry.endpoint[:255],
        model=None if entry.model is None else entry.model[:255],
        status=entry.status,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        latency_ms=entry.latency_ms,
        trace_id=entry.trace_id[:128],
        client=None if entry.client is None else entry.client[:64],
        image_hashes=json.dumps(entry.image_hashes) if entry.image_hashes else None,
        content_json=None if entry.content is None else json.dumps(entry.content, ensure_ascii=False),
        resource=None if entry.resource is None else entry.resource[:128],
        count=entry.count,
    )


class AuditStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def write(self, entry: AuditEntry) -> None:
        self.write_many([entry])

    def write_many(self, entries: Sequence[AuditEntry]) -> None:
        """Every entry in one transaction."""
        with self._sessions.begin() as session:
            session.add_all([_row(entry) for entry in entries])

    def query(
        self, *, limit: int = 50, key_id: str | None = None, since: datetime | None = None, resource: str | None = None
    ) -> list[AuditRecord]:
        """The newest records first, optionally of one key, from a time on, and of one resource (a document
        job: its requests and its pages)."""
        query = select(AuditRecord).order_by(AuditRecord.at.desc(), AuditRecord.id.desc()).limit(limit)
        if key_id is not None:
            query = query.where(AuditRecord.key_id == key_id)
        if resource is not None:
            pages = resource.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
            query = query.where(or_(AuditRecord.resource == resource, AuditRecord.resource.like(pages, escape="\\")))
        if since is not None:
            query = query.where(AuditRecord.at >= since)
        with self._sessions() as session:
            return list(session.scalars(query))

    def purge(self, older_than: datetime) -> int:
        """Delete the records from before ``older_than``; returns how many."""
        with self._sessions.begin() as session:
            return session.execute(delete(AuditRecord).where(AuditRecord.at < older_than)).rowcount


async def purge_periodically(store: AuditStore, retention_days: float, every_s: float = PURGE_EVERY_S) -> None:
    """Delete expired records now and then every ``every_s`` seconds, until cancelled."""
    while True:
        try:
            deleted = await asyncio.to_thread(store.purge, utcnow() - timedelta(days=retention_days))
            if deleted:
                log.info("audit: deleted %d record(s) older than %g days", deleted, retention_days)
        except Exception as exc:  # the database may be down for a while: try again next time
            log.warning("audit: purging old records failed: %s", exc)
        await asyncio.sleep(every_s)


def _endpoint(scope: Scope) -> str:
    """The route template (/v1/documents/{document_id}) once routing ran, else the path as sent."""
    route_path = getattr(scope.get("route"), "path", None)
    return str(route_path if isinstance(route_path, str) else scope.get("path", ""))[:255]


def _resource(scope: Scope, record: RequestRecord) -> str | None:
    """What the request created (noted by its route), else the id its path names (/v1/documents/{document_id})."""
    if record.resource is not None:
        return record.resource
    params = scope.get("path_params") or {}
    return "/".join(str(value) for value in params.values())[:128] or None


def _content(record: RequestRecord) -> dict | None:
    if not record.keep_content:
        return None
    return {"texts": record.texts, "images": [base64.b64encode(data).decode() for data in record.images]}


class AuditMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.enabled = settings.audit
        self.keep_content = settings.audit_content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(scope["app"].state, "vlserve", None) if "app" in scope else None
        writer = getattr(runtime, "audit_writer", None)
        if scope["type"] != "http" or not self.enabled or writer is None or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        at, watch = utcnow(), ResponseWatch(send, keep_content=self.keep_content)
        try:
            await watch.run(self.app, scope, receive)
        finally:
            entry = self._entry(scope, watch.record, at, watch.final_status, watch.seconds)
            if entry.status == 401 and runtime.refusals is not None:  # no valid key: tallied per client
                await runtime.refusals.record(entry)
            else:  # queued, written by the writer's task: the connection's next request waits for no commit
                await writer.submit(entry)

    def _entry(self, scope: Scope, record: RequestRecord, at: datetime, status: int, seconds: float) -> AuditEntry:
        principal = principal_of(scope)
        client = scope.get("client")
        return AuditEntry(
            at=at,
            key_id=scope.get("state", {}).get(REFUSED_KEY) if principal is None else principal.key_id,
            method=scope.get("method", "")[:8],
            endpoint=_endpoint(scope),
            status=status,
            latency_ms=round(seconds * 1000),
            trace_id=str(scope.get("state", {}).get("request_id") or "-"),
            client=None if not client else str(client[0]),
            model=record.model,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            image_hashes=list(record.image_hashes),
            content=_content(record),
            resource=_resource(scope, record),
        )
