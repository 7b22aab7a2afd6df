"""Submission of a document job: check every upload and option, then store the job and its pages.

Every problem is a 4xx naming it before anything is stored: no file, too large, not a PDF or image,
corrupt or encrypted PDF, too many pages, a bad page range, an invalid schema, a refused webhook URL.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlserve.documents.webhook import check_webhook_url
from vlserve.errors import ClientError, ImageError, PayloadTooLargeError, UnsupportedMediaError
from vlserve.jsonlimits import JSONTooDeepError, loads, too_deep
from vlserve.media import ImageLimits, parse_allowlist
from vlserve.media.images import read_size
from vlserve.media.limits import check_request_pixels
from vlserve.media.page_ranges import parse_page_range
from vlserve.media.pdf import inspect_pdf
from vlserve.settings import Settings
from vlserve.store.db import utcnow
from vlserve.store.jobs import JobStore, NewFile, NewPage
from vlserve.store.models import Document, new_document_id
from vlserve.structured import OutputFormat
from vlserve.structured.formats import check_schema

_UNLIMITED_PAGES = 1_000_000  # the page limit applies to the pages selected, checked below


@dataclass(frozen=True)
class Upload:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class Submission:
    prompt: str | None = None
    json_schema: str | None = None
    pages: str | None = None
    webhook_url: str | None = None
    owner: str | None = None  # the API key submitting the job (None: auth is off)


def parse_schema(text: str | None, *, max_depth: int) -> OutputFormat | None:
    """The ``json_schema`` field's format (None: none given), checked like any schema; CPU work as long as
    the schema, so call it in a thread from async code."""
    if text is None or not text.strip():
        return None
    try:
        schema = loads(text, max_depth)
    except JSONTooDeepError:
        raise too_deep("json_schema", max_depth) from None
    except json.JSONDecodeError as exc:
        raise ClientError(
            f"json_schema is not valid JSON: {exc.msg} at character {exc.pos}", param="json_schema"
        ) from None
    check_schema(schema, "json_schema", max_depth=max_depth)
    name = schema.get("title") if isinstance(schema.get("title"), str) else "document"
    return OutputFormat.of(name[:64], schema, max_depth)


def _is_pdf(upload: Upload) -> bool:
    return b"%PDF-" in upload.data[:1024] or (upload.content_type or "").lower() == "application/pdf"


class DocumentIntake:
    def __init__(self, store: JobStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._allowlist = parse_allowlist(settings.url_allowlist)

    def submit(self, uploads: Sequence[Upload], form: Submission, output: OutputFormat | None) -> tuple[Document, str]:
        """Store the job; returns it with the webhook secret to hand to the client ("" when none)."""
        s = self._settings
        if not uploads:
            raise ClientError("no file: send one PDF, or one or more image files, as 'file'", param="file")
        size = sum(len(u.data) for u in uploads)
        if size > s.document_max_bytes:
            raise PayloadTooLargeError(
                f"the upload is {size} bytes, more than the limit of {s.document_max_bytes} bytes "
                "(VLSERVE_DOCUMENT_MAX_BYTES)",
                param="file",
            )
        webhook = None if not form.webhook_url else check_webhook_url(form.webhook_url, self._allowlist)
        if any(_is_pdf(u) for u in uploads):
            kind, available = "pdf", self._pdf_pages(uploads)
        else:
            kind, available = "images", self._image_pages(uploads)
        selected = parse_page_range(form.pages, len(available))
        if len(selected) > s.document_max_pages:
            raise PayloadTooLargeError(
                f"{len(selected)} pages selected, more than the limit of {s.document_max_pages} pages per job "
                "(use 'pages' to select fewer)",
                param="file",
                code="too_many_pages",
            )
        secret = "" if webhook is None or s.webhook_secret else secrets.token_urlsafe(32)
        doc = Document(
            id=new_document_id(), status="queued", created_at=utcnow(), kind=kind,
            filename=uploads[0].filename, prompt=form.prompt or None,
            schema_name=None if output is None else output.name,
            schema_json=None if output is None else output.schema_json,
            options_json=json.dumps({
                "longest_side": s.document_longest_side, "temperatures": s.document_temperatures,
                "max_tokens": s.document_max_tokens,
            }),
            pages_total=len(selected), webhook_url=webhook, webhook_secret=secret or None, webhook_attempts=0,
            owner=form.owner,
        )  # fmt: skip
        files = [NewFile(u.filename, u.content_type or "application/octet-stream", u.data) for u in uploads]
        stored = self._store.create(doc, files, [available[i] for i in selected])
        return stored, secret

    def _pdf_pages(self, uploads: Sequence[Upload]) -> list[NewPage]:
        if len(uploads) != 1:
            raise ClientError("send one PDF per job, or image files only (not both)", param="file", code="mixed_upload")
        with tempfile.TemporaryDirectory(prefix="vlserve-upload-") as tmp:
            path = Path(tmp) / "upload.pdf"
            path.write_bytes(uploads[0].data)
            count = inspect_pdf(path, max_pages=_UNLIMITED_PAGES)
        return [NewPage(page_number=i + 1, file_position=0, file_page=i) for i in range(count)]

    def _image_pages(self, uploads: Sequence[Upload]) -> list[NewPage]:
        s = self._settings
        if len(uploads) > s.document_max_files:
            raise ClientError(f"{len(uploads)} files sent, at most {s.document_max_files} images per job", param="file")
        limits = ImageLimits(max_bytes=s.document_max_bytes, max_pixels=s.max_image_pixels)
        sizes = []
        for index, upload in enumerate(uploads):
            try:
                sizes.append(read_size(upload.data, limits, param=f"file[{index}]"))  # the header only
            except ImageError as exc:
                if exc.code == "image_too_large":  # the image limit: the same error as on every endpoint
                    raise
                name = upload.filename or f"file {index + 1}"
                raise UnsupportedMediaError(
                    f"{name} is neither a PDF nor a readable image: {exc.message}", param=f"file[{index}]"
                ) from None
        check_request_pixels(sizes, s.max_request_pixels, param="file")  # all of them, like every endpoint
        return [NewPage(page_number=i + 1, file_position=i, file_page=0) for i in range(len(uploads))]
