"""A job's files as pages: each file is copied once from the database to a local cache, pages render from it.

Only the page being read is ever an image in memory: a PDF page is rendered on demand from the cached
file (``vlserve.media.pdf``), an image file is decoded when its page comes up. Each server keeps its own
cache, so servers sharing one PostgreSQL need no shared disk.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from PIL import Image

from vlserve.media.images import ImageLimits, load_image
from vlserve.media.pdf import render_page
from vlserve.store.jobs import ClaimedPage, JobStore


class PageSource:
    def __init__(self, store: JobStore, cache_dir: Path, image_limits: ImageLimits) -> None:
        self._store = store
        self._cache = cache_dir
        self._limits = image_limits
        self._lock = threading.Lock()

    def _file(self, document_id: str, position: int) -> Path:
        path = self._cache / document_id / f"{position}.bin"
        with self._lock:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.part")
                partial.write_bytes(self._store.file_content(document_id, position))
                partial.replace(path)
        return path

    def render(self, page: ClaimedPage, longest_side: int) -> Image.Image:
        """The page as an RGB image whose longest side is at most ``longest_side`` (exactly, for PDF pages)."""
        path = self._file(page.document_id, page.file_position)
        if page.kind == "pdf":
            return render_page(path, page.file_page, longest_side=longest_side)
        image = load_image(path.read_bytes(), self._limits, param="file")
        image.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
        return image

    def forget(self, document_id: str) -> None:
        """Drop the cached files of an ended job."""
        shutil.rmtree(self._cache / document_id, ignore_errors=True)
