"""PDF pages of document jobs rendered in worker processes (``VLSERVE_PDF_WORKERS``).

pdfium is not thread-safe, so in one process every page of every job renders in turn, on one core, and a
file that crashes pdfium takes the server with it. Here a small pool of processes, started on the first
PDF page by multiprocessing's forkserver (they inherit none of the server's threads, sockets or signal
handlers), renders pages of any job side by side; a worker that dies fails its page with a clean error and
the pool is replaced. Pages come back as raw RGB over a pipe (about 5 MB at 1288 px, a few ms): memory is
bounded by the pages in hand, one per page loop (``VLSERVE_DOCUMENT_CONCURRENCY``). With 0 workers pages
render in this process, one at a time, as :func:`vlserve.media.pdf.render_page` does.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import select
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from PIL import Image

from vlserve.errors import DocumentError, VLServeError
from vlserve.media.pdf import render_page

log = logging.getLogger("vlserve.documents")


class PdfRenderer:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def render(self, path: Path, index: int, *, longest_side: int) -> Image.Image:
        """Page ``index`` of the PDF at ``path``, exactly as :func:`render_page` draws it."""
        if self.workers < 1:
            return await asyncio.to_thread(render_page, path, index, longest_side=longest_side)
        pool = self._running()
        try:
            result = await asyncio.wrap_future(pool.submit(_render, os.fspath(path), index, longest_side))
        except BrokenProcessPool:
            self._replace(pool)
            log.warning("a PDF page renderer died on page %d; the pool is replaced", index + 1)
            raise DocumentError(
                f"page {index + 1} could not be rendered: it stopped the PDF renderer (the file is damaged)",
                param="file",
            ) from None
        if isinstance(result, str):
            raise DocumentError(result, param="file")
        size, pixels = result
        return Image.frombytes("RGB", size, pixels)

    def _running(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
            )
        return self._pool

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (nothing they hold is worth finishing: their pages are handed back)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(server_pid: int) -> None:
    """Ctrl-C is the server's to handle (it stops the pool); and a worker leaves with its server. A worker
    holds both ends of its task queue, so a server killed outright (SIGKILL, the OOM killer) would leave it
    waiting for ever, and the forkserver with it: a thread waits on the server's pidfd and ends the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        server = os.pidfd_open(server_pid)
    except ProcessLookupError:
        os._exit(0)
    threading.Thread(target=_exit_with, args=(server,), name="vlserve-pdf-watch", daemon=True).start()


def _exit_with(server: int) -> None:
    select.select([server], [], [])  # readable once the server process has exited
    os._exit(0)


def _render(path: str, index: int, longest_side: int) -> tuple[tuple[int, int], bytes] | str:
    """In a worker: the page's size and RGB bytes, or the message of the error it raised (sent as text: the
    server's exceptions carry fields that pickling would drop)."""
    try:
        image = render_page(Path(path), index, longest_side=longest_side)
    except VLServeError as error:
        return error.message
    return image.size, image.tobytes()
