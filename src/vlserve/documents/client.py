"""What `vlserve doc` does: run a document job on a server (or in this process) and return its result.

The inputs are checked before anything is uploaded (:func:`check_inputs`: the files, the schema, the
output path), so a typo costs nothing. The job id is reported as soon as the server accepts the job,
progress as (pages done, pages total) while it runs; the result is the same JSON as
``GET /v1/documents/{id}/result``.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from vlserve.documents.intake import Submission, Upload
from vlserve.jsonlimits import DEEPEST, JSONTooDeepError, loads
from vlserve.settings import Settings
from vlserve.store.models import ENDED

Progress = Callable[[int, int], None]
Accepted = Callable[[str], None]


class InputError(Exception):
    """A `vlserve doc` input that cannot work, found before anything is uploaded; the message says which."""


def _readable(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} {path}: no such file")
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} cannot be read (permission denied)")


def read_schema(path: Path) -> str:
    """The schema file's text, once it is known to be a JSON object; else :class:`InputError`. Its depth is
    the server's to judge: refused here only past what any server accepts (so parsing never recurses out)."""
    _readable(path, "--schema")
    try:
        text = path.read_text(encoding="utf-8")
        schema = loads(text, DEEPEST)
    except UnicodeDecodeError:
        raise InputError(f"--schema {path} is not UTF-8 text") from None
    except JSONTooDeepError:
        raise InputError(f"--schema {path} nests more than {DEEPEST} levels deep; no server accepts it") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"--schema {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except OSError as exc:
        raise InputError(f"--schema {path} cannot be read: {exc.strerror}") from None
    if not isinstance(schema, dict):
        raise InputError(f"--schema {path} must hold a JSON object (a JSON Schema), not {type(schema).__name__}")
    return text


def check_output(path: Path) -> None:
    """That ``path`` can be written: its directory exists and is writable, and it is not a directory."""
    if path.is_dir():
        raise InputError(f"--out {path} is a directory; name a file in it")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"--out {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"--out {path} cannot be written (permission denied)")


def check_inputs(files: Sequence[Path], schema: Path | None, out: Path | None) -> str | None:
    """Every input of `vlserve doc` checked before any upload; returns the schema text (None: no schema)."""
    for path in files:
        _readable(path, "file")
    if out is not None:
        check_output(out)
    return None if schema is None else read_schema(schema)


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(str(path))[0] or "application/octet-stream"


def run_remote(
    url: str, files: Sequence[Path], form: Submission, *, on_progress: Progress, api_key: str | None = None,
    poll_s: float = 0.5, on_accepted: Accepted | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Submit, report the job id to ``on_accepted`` at once, poll until the job ends, return its result."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    fields = {k: v for k, v in vars(form).items() if v is not None}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(300, connect=10)) as client:
        parts = [("file", (p.name, p.read_bytes(), _content_type(p))) for p in files]
        created = client.post("/v1/documents", files=parts, data=fields)
        created.raise_for_status()
        job_id = created.json()["id"]
        if on_accepted is not None:
            on_accepted(job_id)
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
