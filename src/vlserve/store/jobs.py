"""Document jobs in the database: create, read, cancel, and the worker side (claim, lease, finish).

Every state change that two workers could race on is one conditional UPDATE whose row count says who
won, the same on SQLite and PostgreSQL: a page is claimed only while it is queued or its lease has run
out, finished only by the worker still holding it, and a job is ended only by the one call that sees
its last page end. Methods are synchronous; the async server calls them in worker threads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from vlserve.store.db import utcnow
from vlserve.store.models import ENDED, Document, DocumentFile, Page


@dataclass(frozen=True)
class NewFile:
    filename: str | None
    media_type: str
    content: bytes


@dataclass(frozen=True)
class NewPage:
    page_number: int
    file_position: int
    file_page: int


@dataclass(frozen=True)
class ClaimedPage:
    """What a worker needs to process one page, read once at claim time."""

    page_id: int
    document_id: str
    position: int
    page_number: int
    file_position: int
    file_page: int
    kind: str
    prompt: str | None
    schema_name: str | None
    schema_json: str | None
    options: dict[str, Any]
    owner: str | None = None  # the API key that submitted the job: its pages count against its tokens per day


@dataclass(frozen=True)
class PageOutcome:
    status: str  # "succeeded" or "failed"
    attempts: int
    text: str | None = None
    data: Any = None
    error: str | None = None
    detail: dict[str, Any] | None = None


class UnknownCursorError(LookupError):
    """The ``before`` id of a listing is not a job (of the owner asking)."""


def _claimable(now: Any) -> Any:
    return or_(Page.status == "queued", and_(Page.status == "running", Page.lease_until < now))


class JobStore:
    def __init__(self, sessions: sessionmaker, *, keep_files: bool = False) -> None:
        self._sessions = sessions
        self._keep_files = keep_files  # False: a job's uploads are deleted when it ends (its results stay)

    def _drop_files(self, session: Session, document_id: str) -> None:
        if not self._keep_files:
            session.execute(delete(DocumentFile).where(DocumentFile.document_id == document_id))

    # --- the API side --------------------------------------------------------------------------
    def create(self, document: Document, files: Sequence[NewFile], pages: Sequence[NewPage]) -> Document:
        document.files = [
            DocumentFile(
                position=i, filename=f.filename, media_type=f.media_type, size=len(f.content), content=f.content
            )
            for i, f in enumerate(files)
        ]
        document.pages = [
            Page(
                position=i, page_number=p.page_number, file_position=p.file_position, file_page=p.file_page,
                status="queued", attempts=0,
            )
            for i, p in enumerate(pages)
        ]  # fmt: skip
        with self._sessions.begin() as session:
            session.add(document)
        return self.get(document.id)  # type: ignore[return-value]

    def get(self, document_id: str, *, owner: str | None = None) -> Document | None:
        """The job; with ``owner``, only if that key submitted it (None: whoever did)."""
        query = select(Document).where(Document.id == document_id)
        if owner is not None:
            query = query.where(Document.owner == owner)
        with self._sessions() as session:
            return session.scalar(query.options(selectinload(Document.pages)))

    def recent(
        self, *, limit: int, status: str | None = None, before: str | None = None, owner: str | None = None
    ) -> list[Document]:
        """Newest first; ``before`` is the id of the last job of the previous page (UnknownCursorError if it
        is not a job of ``owner``); with ``owner``, only the jobs that key submitted."""
        query = select(Document).order_by(Document.created_at.desc(), Document.id.desc()).limit(limit)
        if status is not None:
            query = query.where(Document.status == status)
        if owner is not None:
            query = query.where(Document.owner == owner)
        with self._sessions() as session:
            if before is not None:
                anchor = session.get(Document, before)
                if anchor is None or (owner is not None and anchor.owner != owner):
                    raise UnknownCursorError(before)
                query = query.where(
                    or_(
                        Document.created_at < anchor.created_at,
                        and_(Document.created_at == anchor.created_at, Document.id < anchor.id),
                    )
                )
            return list(session.scalars(query.options(selectinload(Document.pages))))

    def cancel(self, document_id: str) -> bool:
        """Cancel a job that has not ended; False when it had already ended."""
        now = utcnow()
        with self._sessions.begin() as session:
            ended = session.execute(
                update(Document)
                .where(Document.id == document_id, Document.status.not_in(ENDED))
                .values(status="cancelled", finished_at=now)
            )
            if ended.rowcount != 1:
                return False
            session.execute(
                update(Page)
                .where(Page.document_id == document_id, Page.status.in_(("queued", "running")))
                .values(status="cancelled", finished_at=now, worker=None, lease_until=None)
            )
            self._drop_files(session, document_id)
            return True

    # --- the worker side -------------------------------------------------------------------------
    def release_worker(self, worker: str) -> int:
        """Put back the pages ``worker`` holds (a worker that stops cleanly hands them back); returns how many."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Page)
                .where(Page.worker == worker, Page.status == "running")
                .values(status="queued", worker=None, lease_until=None)
            )
            return result.rowcount

    def claim(self, worker: str, lease_s: float) -> ClaimedPage | None:
        """The first claimable page of the oldest unfinished job, now held by ``worker``; None when idle."""
        for _ in range(8):  # another worker may win the race for a candidate: take the next one
            now = utcnow()
            with self._sessions.begin() as session:
                candidate = session.execute(
                    select(Page.id, Page.document_id)
                    .join(Document)
                    .where(Document.status.in_(("queued", "running")), _claimable(now))
                    .order_by(Document.created_at, Page.position)
                    .limit(1)
                ).first()
                if candidate is None:
                    return None
                won = session.execute(
                    update(Page)
                    .where(Page.id == candidate.id, _claimable(now))
                    .values(
                        status="running", worker=worker, lease_until=now + timedelta(seconds=lease_s), started_at=now
                    )
                )
                if won.rowcount != 1:
                    continue
                session.execute(
                    update(Document)
                    .where(Document.id == candidate.document_id, Document.status == "queued")
                    .values(status="running", started_at=now)
                )
                page = session.get(Page, candidate.id)
                doc = session.get(Document, candidate.document_id)
                return ClaimedPage(
                    page_id=page.id, document_id=doc.id, position=page.position, page_number=page.page_number,
                    file_position=page.file_position, file_page=page.file_page, kind=doc.kind, prompt=doc.prompt,
                    schema_name=doc.schema_name, schema_json=doc.schema_json, options=json.loads(doc.options_json),
                    owner=doc.owner,
                )  # fmt: skip
        return None

    def put_back(self, page_id: int, worker: str) -> bool:
        """Return a held page to the queue unread (the engine was too busy to take it)."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Page)
                .where(Page.id == page_id, Page.worker == worker, Page.status == "running")
                .values(status="queued", worker=None, lease_until=None)
            )
            return result.rowcount == 1

    def renew(self, worker: str, lease_s: float) -> int:
        with self._sessions.begin() as session:
            result = session.execute(
                update(Page)
                .where(Page.worker == worker, Page.status == "running")
                .values(lease_until=utcnow() + timedelta(seconds=lease_s))
            )
            return result.rowcount

    def still_wanted(self, page_id: int, worker: str) -> bool:
        """Whether ``worker`` still holds the page and its job is not cancelled."""
        return page_id in self.wanted(worker, [page_id])

    def wanted(self, worker: str, page_ids: Sequence[int]) -> set[int]:
        """Of ``page_ids``, those ``worker`` still holds and whose job is not cancelled: one query for all the
        pages a worker is reading (a page missing from the answer is no longer worth reading)."""
        if not page_ids:
            return set()
        with self._sessions() as session:
            return set(
                session.scalars(
                    select(Page.id)
                    .join(Document)
                    .where(Page.id.in_(page_ids), Page.worker == worker, Page.status == "running")
                    .where(Document.status == "running")
                )
            )

    def finish_page(self, page_id: int, worker: str, outcome: PageOutcome) -> bool:
        """Store a page's result; False (nothing stored) when the worker no longer holds the page."""
        values = {
            "status": outcome.status, "attempts": outcome.attempts, "text": outcome.text, "error": outcome.error,
            "data_json": None if outcome.data is None else json.dumps(outcome.data, ensure_ascii=False),
            "detail_json": None if outcome.detail is None else json.dumps(outcome.detail),
            "finished_at": utcnow(), "worker": None, "lease_until": None,
        }  # fmt: skip
        with self._sessions.begin() as session:
            result = session.execute(
                update(Page).where(Page.id == page_id, Page.worker == worker, Page.status == "running").values(**values)
            )
            return result.rowcount == 1

    def end_if_done(self, document_id: str) -> Document | None:
        """End the job if no page is left; returns it only to the one caller that ended it."""
        unfinished = exists().where(Page.document_id == document_id, Page.status.not_in(ENDED))
        any_success = exists().where(Page.document_id == document_id, Page.status == "succeeded")
        with self._sessions.begin() as session:
            doc = session.get(Document, document_id)
            if doc is None or doc.status in ENDED:
                return None
            final = "succeeded" if session.scalar(select(any_success)) else "failed"
            result = session.execute(
                update(Document)
                .where(Document.id == document_id, Document.status.not_in(ENDED), ~unfinished)
                .values(
                    status=final,
                    finished_at=utcnow(),
                    webhook_state="pending" if doc.webhook_url else None,
                )
            )
            if result.rowcount != 1:
                return None
            self._drop_files(session, document_id)
        return self.get(document_id)

    def file_content(self, document_id: str, position: int) -> bytes:
        with self._sessions() as session:
            return session.scalars(
                select(DocumentFile.content).where(
                    DocumentFile.document_id == document_id, DocumentFile.position == position
                )
            ).one()

    # --- webhooks ----------------------------------------------------------------------------------
    def claim_webhook(self, lease_s: float) -> Document | None:
        """An ended job whose webhook is due (never sent, or its sender died), now held for sending."""
        now = utcnow()
        due = or_(
            Document.webhook_state == "pending",
            and_(Document.webhook_state == "sending", Document.webhook_lease_until < now),
        )
        with self._sessions.begin() as session:
            candidate = session.scalar(select(Document.id).where(due).order_by(Document.finished_at).limit(1))
            if candidate is None:
                return None
            won = session.execute(
                update(Document)
                .where(Document.id == candidate, due)
                .values(webhook_state="sending", webhook_lease_until=now + timedelta(seconds=lease_s))
            )
            if won.rowcount != 1:
                return None
        return self.get(candidate)

    def record_webhook(self, document_id: str, *, delivered: bool, attempts: int, error: str | None) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(Document)
                .where(Document.id == document_id)
                .values(
                    webhook_state="delivered" if delivered else "failed",
                    webhook_attempts=Document.webhook_attempts + attempts,
                    webhook_error=error,
                    webhook_lease_until=None,
                )
            )

    # --- retention ---------------------------------------------------------------------------------
    def purge_ended(self, older_than: timedelta) -> int:
        """Delete the jobs that ended more than ``older_than`` ago, with their files and pages (results
        included, by the foreign keys' ON DELETE CASCADE); returns how many jobs. One conditional DELETE, so
        several servers purging the same database at once each delete what is left and never fail. A job
        whose webhook is still due is kept until it has been sent (or has failed for good)."""
        webhook_done = or_(Document.webhook_state.is_(None), Document.webhook_state.not_in(("pending", "sending")))
        expired = delete(Document).where(
            Document.status.in_(ENDED), Document.finished_at < utcnow() - older_than, webhook_done
        )
        with self._sessions.begin() as session:
            return session.execute(expired.execution_options(synchronize_session=False)).rowcount
