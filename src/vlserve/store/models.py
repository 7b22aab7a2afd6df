"""The tables of document jobs: a job, the files it was given, and one row per page to read.

A page row is the unit of work and of resumption: workers claim it with a conditional UPDATE (see
``vlserve.store.pages``), hold it under a lease they renew, and write its result in the same row, so a
finished page is never recomputed and a page of a dead worker is picked up again once its lease ends.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
PAGE_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ENDED = ("succeeded", "failed", "cancelled")
DOCUMENT_ID_PATTERN = r"^doc_[0-9a-f]{24}$"  # every job id: doc_ and 24 hex digits (new_document_id)


def new_document_id() -> str:
    return f"doc_{uuid.uuid4().hex[:24]}"


class Base(DeclarativeBase):
    pass


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(8))  # "pdf" or "images"
    filename: Mapped[str | None] = mapped_column(String(255))
    prompt: Mapped[str | None] = mapped_column(Text)
    schema_name: Mapped[str | None] = mapped_column(String(64))
    schema_json: Mapped[str | None] = mapped_column(Text)
    options_json: Mapped[str] = mapped_column(Text)  # render size, temperature ladder, token limit
    pages_total: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    webhook_state: Mapped[str | None] = mapped_column(String(16))  # pending, sending, delivered, failed
    webhook_lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_error: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(40), index=True)  # the API key id that submitted it

    files: Mapped[list[DocumentFile]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="DocumentFile.position"
    )
    pages: Mapped[list[Page]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="Page.position"
    )


class DocumentFile(Base):
    __tablename__ = "document_files"
    __table_args__ = (UniqueConstraint("document_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str | None] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))  # loaded only when a worker needs the file

    document: Mapped[Document] = relationship(back_populates="files")


class Page(Base):
    __tablename__ = "document_pages"
    __table_args__ = (
        UniqueConstraint("document_id", "position"),
        Index("ix_document_pages_claim", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # order within the job
    page_number: Mapped[int] = mapped_column(Integer)  # 1-based, as the user counts pages of the source
    file_position: Mapped[int] = mapped_column(Integer)
    file_page: Mapped[int] = mapped_column(Integer)  # 0-based page inside that file
    status: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str | None] = mapped_column(Text)
    data_json: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    detail_json: Mapped[str | None] = mapped_column(Text)  # timings and every attempt
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    document: Mapped[Document] = relationship(back_populates="pages")


class ApiKey(Base):
    """An API key: only the SHA-256 of its secret is stored; the secret is shown once, when it is created."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # key_<hex>, printed in lists and audit records
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))  # the secret's first characters, to recognise it
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(255))  # comma-separated: chat, documents, metrics, admin
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)  # None: the server's default
    concurrent_requests: Mapped[int | None] = mapped_column(Integer)
    tokens_per_day: Mapped[int | None] = mapped_column(Integer)


class AuditRecord(Base):
    """One API request: who, what, how it ended; never prompt text or image bytes unless enabled."""

    __tablename__ = "audit_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str | None] = mapped_column(String(40), index=True)
    method: Mapped[str] = mapped_column(String(8))
    endpoint: Mapped[str] = mapped_column(String(255))
    model: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    trace_id: Mapped[str] = mapped_column(String(128), index=True)
    client: Mapped[str | None] = mapped_column(String(64))
    image_hashes: Mapped[str | None] = mapped_column(Text)  # JSON list of "sha256:<hex>"
    content_json: Mapped[str | None] = mapped_column(Text)  # prompt text and images, only with audit_content
    # The job (doc_…) or other resource the request named or created; a document page: doc_…/pages/N.
    resource: Mapped[str | None] = mapped_column(String(128), index=True)
    # How many requests the record stands for: None is one; refusals without a valid key are tallied.
    count: Mapped[int | None] = mapped_column(Integer)
