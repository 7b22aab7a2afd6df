"""A job's files as pages: each file is copied once from the database to a local cache, pages render from it.

Only the page being read is ever an image in memory: a PDF page is rendered on demand from the cached
file (``vlserve.media.pdf``, in the renderer's worker processes: ``vlserve.documents.renderer``), an image
file is decoded when its page comes up, straight to about the size the page is read at (a JPEG through DCT
scaling, any image reduced by a whole factor; see ``vlserve.media.images``) and within the server's decode
budget (``vlserve.media.decode_budget``), like every other untrusted image. Each server keeps its own
cache, so servers sharing one PostgreSQL need no shared disk.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import threading
from functools import partial
from pathlib import Path

from PIL import Image

from vlserve.documents.renderer import PdfRenderer
from vlserve.media.decode_budget import DecodeBudget
from vlserve.media.images import ImageLimits, decode_image, read_size
from vlserve.store.jobs import ClaimedPage, JobStore


class PageSource:
    def __init__(
        self,
        store: JobStore,
        cache_dir: Path,
        image_limits: ImageLimits,
        budget: DecodeBudget | None = None,
        renderer: PdfRenderer | None = None,
    ) -> None:
        self._store = store
        self._renderer = renderer if renderer is not None else PdfRenderer(0)
        self._cache = cache_dir
        self._limits = image_limits
        self._budget = budget if budget is not None else DecodeBudget(0, wait_s=0)
        self._lock = threading.Lock()

    def _file(self, document_id: str, position: int) -> Path:
        path = self._cache / document_id / f"{position}.bin"
        with self._lock:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                part = path.with_suffix(f".{os.getpid()}.part")
                part.write_bytes(self._store.file_content(document_id, position))
                part.replace(path)
        return path

    async def render(self, page: ClaimedPage, longest_side: int) -> Image.Image:
        """The page as an RGB image whose longest side is at most ``longest_side`` (exactly, for PDF pages).
        An image file waits for its pixels in the decode budget (503 when they do not come in time)."""
        path = await asyncio.to_thread(self._file, page.document_id, page.file_position)
        if page.kind == "pdf":
            return await self._renderer.render(path, page.file_page, longest_side=longest_side)
        data, (width, height) = await asyncio.to_thread(self._header, path)
        decode = partial(_decode_page, data, self._limits, (width, height), longest_side)
        return await self._budget.run(width * height, decode)

    def _header(self, path: Path) -> tuple[bytes, tuple[int, int]]:
        """The file's bytes and its size from the header, checked against the limits; nothing decoded."""
        data = path.read_bytes()
        return data, read_size(data, self._limits, param="file")

    def forget(self, document_id: str) -> None:
        """Drop the cached files of an ended job."""
        shutil.rmtree(self._cache / document_id, ignore_errors=True)


def _decode_page(data: bytes, limits: ImageLimits, size: tuple[int, int], longest_side: int) -> Image.Image:
    """An image file decoded straight to a size no smaller, side by side, than its page is read at (``size``
    is its own, from the header), then shrunk so that its longest side is at most ``longest_side``."""
    width, height = size
    scale = longest_side / max(width, height)
    target = math.ceil(width * height * scale * scale) if scale < 1 else None  # the shrunk image's pixels
    image = decode_image(data, limits, param="file", target_pixels=target).image
    image.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    return image
