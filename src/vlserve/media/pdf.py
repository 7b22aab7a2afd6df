"""Open untrusted PDFs with pdfium: count and validate pages, render one page at a time to RGB.

pdfium is not thread-safe, so every pdfium call in this module runs under one lock, and every
document, page and bitmap is closed before the lock is released: memory is bounded by one page.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from vlserve.errors import DocumentError, PayloadTooLargeError, UnsupportedMediaError

__all__ = ["inspect_pdf", "iter_pages", "render_page"]

_PARAM = "file"
_HEADER_WINDOW = 1024
_LOCK = threading.Lock()
_REASONS = {
    pdfium_c.FPDF_ERR_FORMAT: "the file is damaged or not valid PDF",
    pdfium_c.FPDF_ERR_FILE: "the file could not be read",
    pdfium_c.FPDF_ERR_PAGE: "a page is missing or its content is damaged",
}


def inspect_pdf(path: Path, *, max_pages: int) -> int:
    """The page count of the PDF at ``path``, refusing non-PDFs, damaged, encrypted and oversized ones."""
    with path.open("rb") as file:
        head = file.read(_HEADER_WINDOW)
    if b"%PDF-" not in head:
        raise UnsupportedMediaError("file is not a PDF (no %PDF- header in its first 1024 bytes)", param=_PARAM)
    with _LOCK:
        doc = _open(path)
        try:
            count = len(doc)
        finally:
            doc.close()
    if count < 1:
        raise DocumentError("PDF cannot be read: it has no pages", param=_PARAM)
    if count > max_pages:
        raise PayloadTooLargeError(
            f"PDF has {count} pages, more than the limit of {max_pages} pages", param=_PARAM, code="too_many_pages"
        )
    return count


def render_page(path: Path, index: int, *, longest_side: int) -> Image.Image:
    """Page ``index`` (0-based, its rotation applied) as RGB on white, the longer side exactly ``longest_side``."""
    if longest_side < 1:
        raise ValueError(f"longest_side must be at least 1, not {longest_side}")
    with _LOCK:
        doc = _open(path)
        try:
            if not 0 <= index < len(doc):
                raise IndexError(f"page index {index} is outside a document of {len(doc)} pages")
            try:
                page = doc.get_page(index)
            except pdfium.PdfiumError:
                raise DocumentError(f"PDF cannot be read: page {index + 1} is damaged", param=_PARAM) from None
            width, height = _fit(page.get_size(), longest_side, index)
            return _rasterise(page, width, height)
        finally:
            doc.close()  # closes the page with it


def iter_pages(path: Path, indices: Iterable[int], *, longest_side: int) -> Iterator[tuple[int, Image.Image]]:
    """``(index, image)`` for each index, rendered only when asked for: one page in memory at a time."""
    for index in indices:
        yield index, render_page(path, index, longest_side=longest_side)


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


def _rasterise(page: pdfium.PdfPage, width: int, height: int) -> Image.Image:
    """Draw ``page`` (its own rotation applied, annotations included) stretched onto a white RGB canvas."""
    bitmap = pdfium.PdfBitmap.new_native(width, height, pdfium_c.FPDFBitmap_BGR, rev_byteorder=True)
    try:
        bitmap.fill_rect((255, 255, 255, 255), 0, 0, width, height)
        flags = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER
        pdfium_c.FPDF_RenderPageBitmap(bitmap, page, 0, 0, width, height, 0, flags)
        # An RGB image is a copy of the buffer; even if Pillow shared it, the ctypes buffer outlives close().
        return bitmap.to_pil()
    finally:
        bitmap.close()


def _fit(size: tuple[float, float], longest_side: int, index: int) -> tuple[int, int]:
    """Pixel size for a page of ``size`` points whose longer side becomes exactly ``longest_side``."""
    width, height = size
    if not (width > 0 and height > 0):
        raise DocumentError(f"PDF cannot be read: page {index + 1} has no size", param=_PARAM)
    if width >= height:
        return longest_side, max(1, round(height * longest_side / width))
    return max(1, round(width * longest_side / height)), longest_side
