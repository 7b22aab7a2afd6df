"""What `vlserve doc` does: run a document job on a server (or in this process) and return its result.

Progress is reported as (pages done, pages total) while the job runs; the result is the same JSON
as ``GET /v1/documents/{id}/result``.
"""

from __future__ import annotations

import asyncio
import mimetypes
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from vlserve.documents.intake import Submission, Upload
from vlserve.settings import Settings
from vlserve.store.models import ENDED

Progress = Callable[[int, int], None]


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(str(path))[0] or "application/octet-stream"


def run_remote(
    url: str, files: Sequence[Path], form: Submission, *, on_progress: Progress, api_key: str | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:  # fmt: skip
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    fields = {k: v for k, v in vars(form).items() if v is not None}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(300, connect=10)) as client:
        parts = [("file", (p.name, p.read_bytes(), _content_type(p))) for p in files]
        created = client.post("/v1/documents", files=parts, data=fields)
        created.raise_for_status()
        job_id = created.json()["id"]
        while True:
            status = client.get(f"/v1/documents/{job_id}")
            status.raise_for_status()
            body = status.json()
            on_progress(body["pages"]["done"], body["pages"]["total"])
            if body["status"] in ENDED:
                break
            time.sleep(poll_s)
        result = client.get(f"/v1/documents/{job_id}/result")
        result.raise_for_status()
        return result.json()


async def run_local(
    settings: Settings, files: Sequence[Path], form: Submission, *, on_progress: Progress, poll_s: float = 0.2
) -> dict[str, Any]:
    """The whole pipeline in this process, on a throw-away SQLite database."""
    from vlserve.documents.views import job_result
    from vlserve.runtime import open_runtime

    uploads = [Upload(p.name, _content_type(p), p.read_bytes()) for p in files]
    with tempfile.TemporaryDirectory(prefix="vlserve-doc-") as tmp:
        local = settings.model_copy(
            update={"warmup": False, "database_url": f"sqlite:///{Path(tmp) / 'jobs.db'}", "data_dir": Path(tmp),
                    "model": settings.model_dir(), "document_poll_s": poll_s}
        )  # fmt: skip
        async with open_runtime(local, load=True) as runtime:
            documents = runtime.documents
            assert documents is not None
            doc, _ = await documents.submit(uploads, form)
            while True:
                doc = await documents.get(doc.id)
                finished = sum(p.status in ENDED for p in doc.pages)
                on_progress(finished, doc.pages_total)
                if doc.status in ENDED:
                    return job_result(doc)
                await asyncio.sleep(poll_s)
