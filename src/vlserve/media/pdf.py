"""Open untrusted PDFs with pdfium: count and validate pages, render pages to RGB one at a time or in worker processes.

pdfium is not thread-safe, so every pdfium call in this process runs under one lock, and every page and
bitmap is closed before the lock is released: memory is bounded by one page. ``iter_pages`` keeps its
document open between pages (not the lock), and can spread pages over worker processes (each opens the
document itself, so each has its own pdfium); then at most ``window`` pages are rendered or rendering and
not yet handed over, and closing the iterator stops the workers.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from vlserve.errors import DocumentError, PayloadTooLargeError, ServerError, UnsupportedMediaError

__all__ = ["inspect_pdf", "iter_pages", "render_page"]

_PARAM = "file"
_HEADER_WINDOW = 1024
# Re-entrant: a generator of ``iter_pages`` dropped and collected while its thread holds the lock closes
# its document under the lock, between two pdfium calls of that thread, which is safe.
_LOCK = threading.RLock()
_REASONS = {
    pdfium_c.FPDF_ERR_FORMAT: "the file is damaged or not valid PDF",
    pdfium_c.FPDF_ERR_FILE: "the file could not be read",
    pdfium_c.FPDF_ERR_PAGE: "a page is missing or its content is damaged",
}
# Annotations drawn (as pdftoppm does), byte order swapped so pdfium writes RGB, anti-aliasing and image
# smoothing left on: the measured speed-ups that turn them off cost legibility (docs/performance.md).
_FLAGS = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER
_STOP_S = 5.0  # how long a stopped worker may take to exit before it is killed


def inspect_pdf(path: Path, *, max_pages: int) -> int:
    """The page count of the PDF at ``path``, refusing non-PDFs, damaged, encrypted and oversized ones."""
    with path.open("rb") as file:
        head = file.read(_HEADER_WINDOW)
    if b"%PDF-" not in head:
        raise UnsupportedMediaError("file is not a PDF (no %PDF- header in its first 1024 bytes)", param=_PARAM)
    count = _count(path)
    if count < 1:
        raise DocumentError("PDF cannot be read: it has no pages", param=_PARAM)
    if count > max_pages:
        raise PayloadTooLargeError(
            f"PDF has {count} pages, more than the limit of {max_pages} pages", param=_PARAM, code="too_many_pages"
        )
    return count


def render_page(path: Path, index: int, *, longest_side: int) -> Image.Image:
    """Page ``index`` (0-based, its rotation applied) as RGB on white, the longer side exactly ``longest_side``."""
    _check_side(longest_side)
    with _LOCK:
        doc = _open(path)
        try:
            return _to_image(*_render(doc, index, longest_side))
        finally:
            doc.close()  # closes the page with it


def iter_pages(
    path: Path, indices: Iterable[int], *, longest_side: int, workers: int = 1, window: int | None = None
) -> Iterator[tuple[int, Image.Image]]:
    """``(index, image)`` for each index in the order given, rendered only when asked for.

    With ``workers`` 1, one page is in memory at a time, rendered in this process. With more, that many
    processes render ahead, at most ``window`` pages (default twice ``workers``) not yet handed over; the
    images are pixel for pixel those of ``render_page``. Errors come when their page's turn comes, as
    ``render_page`` raises them; closing the iterator early stops the workers at once.
    """
    _check_side(longest_side)
    if workers <= 1:
        yield from _iter_here(path, indices, longest_side)
        return
    window = 2 * workers if window is None else window
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    count = _count(path)  # a document that cannot be opened fails here, as render_page would, before any start
    with _Pool(path, longest_side, workers, window) as pool:
        yield from pool.pages(iter(indices), count)


def _iter_here(path: Path, indices: Iterable[int], longest_side: int) -> Iterator[tuple[int, Image.Image]]:
    """``iter_pages`` in this process: the document is opened once, at the first page (its fonts and other
    shared resources are then loaded once, not once a page), and the lock is held only while rendering."""
    doc = None
    canvas = memoryview(bytearray(longest_side * longest_side * 3))  # every page is drawn here: no new buffer each
    try:
        for index in indices:
            with _LOCK:
                doc = _open(path) if doc is None else doc
                size = _render(doc, index, longest_side, canvas)[0]
            with canvas[: size[0] * size[1] * 3] as pixels:
                image = _to_image(size, pixels)
            yield index, image
    finally:
        if doc is not None:
            with _LOCK:
                doc.close()


class _Pool:
    """Worker processes rendering pages of one document into shared memory, and the bookkeeping that keeps
    pages in order. The shared block has ``window`` slots, each big enough for any page (a square of
    ``longest_side``): a page is asked for only when a slot is free, and its slot is freed once the page is
    copied out to be handed over, so at most ``window`` pages are rendered or rendering at once. Pixels never
    go through a pipe: a worker renders straight into its slot and sends back the page's size."""

    def __init__(self, path: Path, longest_side: int, workers: int, window: int) -> None:
        self._slot_bytes = longest_side * longest_side * 3
        self._links: list[tuple[BaseProcess, Connection]] = []
        self._load: dict[Connection, int] = {}
        # Pages of the shared block are only committed when a worker writes them.
        self._memory = SharedMemory(create=True, size=window * self._slot_bytes)
        self._free = list(range(window))
        try:
            # forkserver: safe in a threaded server (this process is never forked, so workers inherit none
            # of its threads, sockets or signal handlers). Its server, started on first use, imports the main
            # module and this one once; every worker after that starts in milliseconds.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["__main__", __name__])
            for _ in range(workers):
                ours, theirs = context.Pipe()
                args = (theirs, os.fspath(path), longest_side, self._memory.name, self._slot_bytes)
                process = context.Process(target=_work, args=args, daemon=True)
                process.start()
                theirs.close()
                self._links.append((process, ours))
                self._load[ours] = 0
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def pages(self, indices: Iterator[int], count: int) -> Iterator[tuple[int, Image.Image]]:
        """Yield ``(index, image)`` in the order of ``indices``, as many pages ahead as there are slots."""
        order: list[int] = []  # page index of each position asked for so far
        done: dict[int, tuple[int, tuple[int, int]] | BaseException] = {}  # position -> (slot, size) or error
        given = 0  # positions already yielded
        exhausted = False
        while True:
            while not exhausted and self._free:
                index = next(indices, None)
                if index is None:
                    exhausted = True
                    break
                order.append(index)
                if 0 <= index < count:
                    link = min(self._load, key=self._load.__getitem__)
                    self._load[link] += 1
                    try:
                        link.send((len(order) - 1, index, self._free.pop()))
                    except OSError:  # BrokenPipeError: the worker is gone
                        raise _stopped() from None
                else:
                    done[len(order) - 1] = IndexError(f"page index {index} is outside a document of {count} pages")
            if given == len(order):
                return
            while given not in done:
                self._receive(done)
            result = done.pop(given)
            given += 1
            if isinstance(result, BaseException):
                raise result
            yield order[given - 1], self._take(*result)

    def _receive(self, done: dict[int, tuple[int, tuple[int, int]] | BaseException]) -> None:
        """Wait for any worker's next page and file it under its position."""
        for link in wait([link for link, load in self._load.items() if load]):
            assert isinstance(link, Connection)
            try:
                position, slot, size, message = link.recv()
            except (EOFError, OSError):
                raise _stopped() from None
            self._load[link] -= 1
            if message is None:
                done[position] = (slot, size)
            else:
                self._free.append(slot)
                done[position] = DocumentError(message, param=_PARAM)

    def _take(self, slot: int, size: tuple[int, int]) -> Image.Image:
        """Copy a rendered page out of its slot, and free the slot."""
        start = slot * self._slot_bytes
        with self._memory.buf[start : start + size[0] * size[1] * 3] as pixels:
            image = _to_image(size, pixels)
        self._free.append(slot)
        return image

    def close(self) -> None:
        """Stop every worker at once (they hold nothing worth finishing), wait until each has exited, and
        release the shared memory."""
        for process, link in self._links:
            link.close()
            process.terminate()
        for process, _ in self._links:
            process.join(_STOP_S)
            if process.is_alive():
                process.kill()
                process.join()
        self._links.clear()
        self._memory.close()
        self._memory.unlink()


def _stopped() -> ServerError:
    return ServerError("the PDF page renderer stopped unexpectedly")


def _work(link: Connection, path: str, longest_side: int, memory_name: str, slot_bytes: int) -> None:
    """A worker's loop: render each ``(position, index, slot)`` asked for into its slot, then say its size."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    memory = SharedMemory(name=memory_name)  # the parent's resource tracker already knows it; the parent unlinks it
    try:
        doc: pdfium.PdfDocument | None = _open(Path(path))
        failure = None
    except DocumentError as error:
        doc, failure = None, error.message
    try:
        while True:
            try:
                position, index, slot = link.recv()
            except EOFError:
                return
            if doc is None:
                link.send((position, slot, None, failure))
                continue
            try:
                size = _render(doc, index, longest_side, memory.buf, slot * slot_bytes)[0]
            except DocumentError as error:
                link.send((position, slot, None, error.message))
                continue
            link.send((position, slot, size, None))
    finally:
        if doc is not None:
            doc.close()
        memory.close()


def _count(path: Path) -> int:
    with _LOCK:
        doc = _open(path)
        try:
            return len(doc)
        finally:
            doc.close()


def _check_side(longest_side: int) -> None:
    if longest_side < 1:
        raise ValueError(f"longest_side must be at least 1, not {longest_side}")


def _open(path: Path) -> pdfium.PdfDocument:
    """Load the document (caller holds the lock), mapping pdfium's load errors to client errors."""
    raw = pdfium_c.FPDF_LoadDocument(os.fsencode(path) + b"\x00", None)
    if raw:
        return pdfium.PdfDocument(raw)
    err = pdfium_c.FPDF_GetLastError()
    if err == pdfium_c.FPDF_ERR_PASSWORD:
        raise DocumentError("PDF is encrypted: it needs a password to open", param=_PARAM, code="encrypted_document")
    if err == pdfium_c.FPDF_ERR_SECURITY:
        raise DocumentError(
            "PDF is encrypted with an unsupported security scheme", param=_PARAM, code="encrypted_document"
        )
    reason = _REASONS.get(err, "unknown pdfium error")
    raise DocumentError(f"PDF cannot be read: {reason}", param=_PARAM)


def _render(
    doc: pdfium.PdfDocument, index: int, longest_side: int, into: memoryview | None = None, offset: int = 0
) -> tuple[tuple[int, int], ctypes.Array]:
    """Page ``index`` of ``doc`` (caller holds the lock) as its pixel size and packed RGB bytes on white,
    written into ``into`` from ``offset`` when given (room for ``longest_side`` squared pixels there)."""
    if not 0 <= index < len(doc):
        raise IndexError(f"page index {index} is outside a document of {len(doc)} pages")
    try:
        page = doc.get_page(index)
    except pdfium.PdfiumError:
        raise DocumentError(f"PDF cannot be read: page {index + 1} is damaged", param=_PARAM) from None
    try:
        width, height = _fit(page.get_size(), longest_side, index)
        # A packed 24-bit bitmap in a Python-owned buffer, which outlives the bitmap: no copy to keep it.
        buffer = None if into is None else (ctypes.c_ubyte * (width * height * 3)).from_buffer(into, offset)
        bitmap = pdfium.PdfBitmap.new_native(width, height, pdfium_c.FPDFBitmap_BGR, True, buffer)
        try:
            bitmap.fill_rect((255, 255, 255, 255), 0, 0, width, height)
            pdfium_c.FPDF_RenderPageBitmap(bitmap, page, 0, 0, width, height, 0, _FLAGS)
            return (width, height), bitmap.buffer
        finally:
            bitmap.close()
    finally:
        page.close()


def _to_image(size: tuple[int, int], pixels: memoryview | ctypes.Array) -> Image.Image:
    return Image.frombuffer("RGB", size, pixels, "raw", "RGB", 0, 1)


def _fit(size: tuple[float, float], longest_side: int, index: int) -> tuple[int, int]:
    """Pixel size for a page of ``size`` points whose longer side becomes exactly ``longest_side``."""
    width, height = size
    if not (width > 0 and height > 0):
        raise DocumentError(f"PDF cannot be read: page {index + 1} has no size", param=_PARAM)
    if width >= height:
        return longest_side, max(1, round(height * longest_side / width))
    return max(1, round(width * longest_side / height)), longest_side
