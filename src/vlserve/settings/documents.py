"""Settings of the database and of document jobs: their limits, the page workers and the webhooks."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode


class DocumentSettings(BaseSettings):
    """The database (API keys, audit records, document jobs) and how document jobs are read, page by page."""

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database holding API keys, audit records and document jobs; "
        "PostgreSQL: `postgresql+psycopg://user@host:5432/db`, which several servers may share.",
        json_schema_extra={"default_text": "`sqlite:///<data dir>/vlserve.db`"},
    )
    document_max_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024, description="Upload limit per job, all files together (413)."
    )
    document_max_pages: int = Field(
        default=500, ge=1, description="Pages per job, after the page range (413 `too_many_pages`)."
    )
    document_max_files: int = Field(default=100, ge=1, description="Image files per job.")
    document_longest_side: int = Field(
        default=1288,
        ge=64,
        le=8192,
        description="PDF pages are rendered so that their longer side is this many pixels (images are shrunk to it).",
    )
    document_max_tokens: int = Field(default=2048, ge=1, description="Completion limit per page and attempt.")
    document_temperatures: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.5, 0.8],
        description="One attempt per temperature (each 0 to 2), comma-separated or a JSON list: a page whose answer "
        "is cut off, not JSON or off-schema is tried again at the next.",
    )
    document_concurrency: int = Field(
        default=0,
        ge=0,
        description="Pages in flight per server; `0`: `VLSERVE_MAX_BATCH_SIZE`.",
        json_schema_extra={"default_text": "`0` (the batch size)"},
    )
    pdf_workers: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Processes rendering PDF pages side by side (a file that crashes the renderer fails its page, "
        "not the server); `0`: in the server process, one page at a time.",
    )
    document_keep_files: bool = Field(
        default=False,
        description="Keep a job's uploaded files in the database after it ends; by default they are deleted then "
        "(results, statuses and timings stay).",
    )
    document_worker: bool = Field(
        default=True, description="Process document pages in this server; `false`: an API-only server."
    )
    document_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds after which a page held by a server that stopped renewing its lease is taken over.",
    )
    document_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between an idle worker's looks for pages submitted to other servers, and between a "
        "busy one's checks whether another server cancelled the jobs of the pages it is reading.",
    )
    worker_id: str | None = Field(
        default=None,
        description="Readable prefix of this server's name in the job table; each process adds `/<pid>-<random>`, "
        "so two processes never share a name. A killed server's pages are taken over after "
        "`VLSERVE_DOCUMENT_LEASE_S`; a clean stop hands them back at once.",
        json_schema_extra={"default_text": "`<hostname>:<port>`"},
    )
    webhook_secret: str | None = Field(
        default=None,
        description="HMAC-SHA256 key of webhook signatures.",
        json_schema_extra={"default_text": "unset: a random secret per job, returned once as `webhook_secret`"},
    )
    webhook_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Deliveries tried per webhook (network errors, 429 and 5xx are retried with backoff).",
    )
    webhook_timeout: float = Field(default=10.0, gt=0, description="Seconds per webhook delivery attempt.")
    document_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Ended jobs, their pages and results are deleted this many days after they end.",
    )

    @field_validator("document_temperatures", mode="before")
    @classmethod
    def _split_temperatures(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v.strip()]
        return value

    @field_validator("document_temperatures")
    @classmethod
    def _check_temperatures(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 <= t <= 2 for t in value):
            raise ValueError("document_temperatures needs at least one temperature, each in 0..2")
        return value
