"""The JSON shapes of a document job: its status, its result (per page and merged), the webhook summary."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from vlserve.store.db import as_utc
from vlserve.store.models import Document, Page


def _time(value: Any) -> str | None:
    value = as_utc(value)
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _counts(doc: Document) -> Counter:
    return Counter(page.status for page in doc.pages)


def job_status(doc: Document) -> dict[str, Any]:
    counts = _counts(doc)
    done = counts["succeeded"] + counts["failed"]
    return {
        "id": doc.id,
        "object": "document",
        "status": doc.status,
        "filename": doc.filename,
        "created_at": _time(doc.created_at),
        "started_at": _time(doc.started_at),
        "finished_at": _time(doc.finished_at),
        "pages": {
            "total": doc.pages_total,
            "done": done,
            "succeeded": counts["succeeded"],
            "failed": counts["failed"],
            "running": counts["running"],
            "queued": counts["queued"],
            "cancelled": counts["cancelled"],
        },  # fmt: skip
        "errors": [{"page": p.page_number, "error": p.error} for p in doc.pages if p.status == "failed"],
        "schema": doc.schema_name,
        "webhook": None if not doc.webhook_url else {"state": doc.webhook_state, "attempts": doc.webhook_attempts},
    }


def page_view(page: Page, structured: bool) -> dict[str, Any]:
    detail = json.loads(page.detail_json) if page.detail_json else {}
    view: dict[str, Any] = {"page": page.page_number, "status": page.status, "attempts": page.attempts}
    if structured:
        view["data"] = None if page.data_json is None else json.loads(page.data_json)
    else:
        view["text"] = page.text
    if page.error:
        view["error"] = page.error
    view["timings"] = {k: v for k, v in detail.items() if k.endswith("_ms")}
    view["tries"] = detail.get("attempts", [])
    view["worker"] = detail.get("worker")
    return view


def job_result(doc: Document) -> dict[str, Any]:
    """Every page (finished or not) and the merged result of the pages read so far, in page order."""
    structured = doc.schema_json is not None
    pages = [page_view(p, structured) for p in doc.pages]
    done = [p for p in doc.pages if p.status == "succeeded"]
    if structured:
        merged: dict[str, Any] = {"data": [json.loads(p.data_json) for p in done if p.data_json is not None]}
    else:
        merged = {"text": "\n\n".join(f"<!-- page {p.page_number} -->\n{p.text or ''}" for p in done)}
    merged["pages"] = [p.page_number for p in done]
    return {"id": doc.id, "object": "document.result", "status": doc.status, "pages": pages, "document": merged}


def webhook_payload(doc: Document) -> dict[str, Any]:
    counts = _counts(doc)
    return {
        "id": doc.id,
        "object": "document",
        "status": doc.status,
        "filename": doc.filename,
        "pages": {"total": doc.pages_total, **{k: counts.get(k, 0) for k in ("succeeded", "failed", "cancelled")}},
        "created_at": _time(doc.created_at),
        "finished_at": _time(doc.finished_at),
        "result_url": f"/v1/documents/{doc.id}/result",
    }
