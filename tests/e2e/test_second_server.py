"""A second `vlserve serve` on the port of a live server (a common mistake) fails in one line and touches
none of the live server's document pages; SIGTERM hands the live server's pages back at once.

Both servers share the data directory (its SQLite job database) and the default worker name
(host:port), as two commands typed on one machine would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.server import FAST_IMAGES, ServerProcess
from tests.support.pdfs import text_pdf

pytestmark = pytest.mark.e2e

# Markdown pages on random weights run to the token limit: a few seconds each, one at a time.
JOBS = {"document_poll_s": 0.2, "document_longest_side": 256, "document_concurrency": 1,
        "document_max_tokens": 40, "document_temperatures": "0", **FAST_IMAGES}  # fmt: skip


def submit(server: ServerProcess, pages: int) -> str:
    files = {"file": ("report.pdf", text_pdf(pages), "application/pdf")}
    r = httpx.post(f"{server.url}/v1/documents", files=files, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def status(server: ServerProcess, job_id: str) -> dict:
    return httpx.get(f"{server.url}/v1/documents/{job_id}", timeout=10).json()


def wait_for(server: ServerProcess, job_id: str, done, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(latest := status(server, job_id)):
            return latest
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not get there: {latest}")


def pages(database_url: str, job_id: str) -> list[sa.Row]:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT page_number, status, worker, attempts, detail_json FROM document_pages "
                    "WHERE document_id = :id ORDER BY page_number"),
            {"id": job_id},
        ).all()  # fmt: skip
    engine.dispose()
    return rows


def test_a_second_server_on_the_same_port_fails_at_once_and_leaves_the_live_servers_pages_alone(
    demo_model: Path, tmp_path: Path
):
    data = tmp_path / "data"
    database_url = f"sqlite:///{data / 'vlserve.db'}"
    first = ServerProcess(demo_model, tmp_path / "first.log", data_dir=data, shutdown_grace_s=1, **JOBS)
    try:
        first.wait_ready()
        job = submit(first, 4)
        wait_for(first, job, lambda s: s["pages"]["done"] >= 1)

        env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
        env.update({"VLSERVE_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"})
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "vlserve.cli", "serve", "--model", str(demo_model), "--port", str(first.port)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert time.monotonic() - started < 30, "it failed at once, without loading anything"
        assert second.returncode == 2
        output = [line for line in (second.stdout + second.stderr).splitlines() if line.strip()]
        assert output == [f"cannot serve: 127.0.0.1:{first.port} is already in use (another vlserve or another "
                          "program listens there); stop it or choose another --port"]  # fmt: skip

        finished = wait_for(first, job, lambda s: s["status"] in ("succeeded", "failed"))
        assert finished["pages"]["done"] == 4  # succeeded, or failed at the token limit: each read once
        rows = pages(database_url, job)
        workers = {json.loads(row.detail_json)["worker"] for row in rows}
        assert len(workers) == 1 and workers.pop().startswith(f"{os.uname().nodename}:{first.port}/")
        read = [line for line in first.log().splitlines() if f"document {job} page " in line and "attempt(s)" in line]
        assert sorted(line.split(" page ")[1].split(":")[0] for line in read) == ["1", "2", "3", "4"], read

        # SIGTERM with a page in hand: the server exits 0 and no page is left held by it.
        job = submit(first, 6)
        wait_for(first, job, lambda s: s["status"] == "running")
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
        rows = pages(database_url, job)
        assert not [row for row in rows if row.status == "running" or row.worker is not None], rows
        assert {row.status for row in rows} <= {"queued", "succeeded", "failed"}
        assert "queued" in {row.status for row in rows}, "the rest wait for the next server, unclaimed"
        assert "Traceback" not in first.log()
    finally:
        first.stop()
