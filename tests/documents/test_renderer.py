"""Document PDF pages rendered in worker processes: the same pixels, the same errors, a crash fails one page."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pdfs import text_pdf
from vlserve.documents.renderer import PdfRenderer
from vlserve.errors import DocumentError
from vlserve.media.pdf import render_page

pytestmark = pytest.mark.usefixtures("no_network_but_unix_sockets")


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "three.pdf"
    path.write_bytes(text_pdf(3))
    return path


async def render_all(renderer: PdfRenderer, path: Path, pages: range, side: int = 400):
    return await asyncio.gather(*(renderer.render(path, index, longest_side=side) for index in pages))


def test_pages_from_the_workers_are_those_rendered_in_process_and_close_leaves_no_worker(pdf):
    renderer = PdfRenderer(2)
    try:
        images = asyncio.run(render_all(renderer, pdf, range(3)))
        assert len(multiprocessing.active_children()) >= 2  # the forkserver's workers, side by side
    finally:
        renderer.close()
    for index, image in enumerate(images):
        assert image.tobytes() == render_page(pdf, index, longest_side=400).tobytes(), f"page {index + 1}"
    assert renderer._pool is None


def test_a_damaged_file_is_the_same_error_as_in_process(tmp_path):
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(text_pdf(2)[:300])  # its header, then nothing of its pages or cross-reference table
    with pytest.raises(DocumentError) as here:
        render_page(damaged, 0, longest_side=400)
    renderer = PdfRenderer(1)
    try:
        with pytest.raises(DocumentError) as there:
            asyncio.run(render_all(renderer, damaged, range(1)))
    finally:
        renderer.close()
    assert there.value.message == here.value.message and there.value.param == "file"


def test_a_worker_that_dies_fails_its_page_cleanly_and_the_next_page_renders(pdf):
    renderer = PdfRenderer(1)

    async def scenario():
        await renderer.render(pdf, 0, longest_side=400)
        for pid in list(renderer._pool._processes):  # as if pdfium had crashed on a hostile file
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(DocumentError) as crashed:
            await renderer.render(pdf, 1, longest_side=400)
        assert "stopped the PDF renderer" in crashed.value.message and "page 2" in crashed.value.message
        return await renderer.render(pdf, 1, longest_side=400)  # a new pool

    try:
        image = asyncio.run(scenario())
    finally:
        renderer.close()
    assert image.tobytes() == render_page(pdf, 1, longest_side=400).tobytes()


def test_with_no_workers_pages_render_in_this_process(pdf):
    renderer = PdfRenderer(0)
    image = asyncio.run(renderer.render(pdf, 2, longest_side=300))
    assert renderer._pool is None and max(image.size) == 300


def test_workers_leave_with_a_server_killed_outright(pdf):
    script = (
        "import asyncio, os, sys, time; from pathlib import Path\n"
        "from vlserve.documents.renderer import PdfRenderer\n"
        "r = PdfRenderer(1); asyncio.run(r.render(Path(sys.argv[1]), 0, longest_side=200))\n"
        "print(*r._pool._processes, flush=True); time.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script, str(pdf)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in server.stdout.readline().split()]
        assert workers and all(alive(pid) for pid in workers)
    finally:
        server.kill()  # SIGKILL: no shutdown code runs
        server.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "a render worker outlived its server"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
