"""Give memory back to the operating system after a request that used a lot of it.

CPython frees a large request's buffers (its body, decoded images) to the C allocator, but glibc keeps
freed heap pages, so the process's resident memory stays at its peak. ``malloc_trim(0)`` returns them.
It runs after a request whose body was large or after which resident memory grew well beyond its level
at the last trim; at most once a second (a later need is served by a trim scheduled for then), in a
worker thread, never on the event loop. Where glibc is not there (macOS, musl) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
import time
from collections.abc import Callable

log = logging.getLogger("vlserve.memory")

_MIB = 1024 * 1024


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def resident_bytes() -> int | None:
    """This process's resident memory (VmRSS), or None where /proc is not there."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryReleaser:
    def __init__(
        self, *, body_bytes: int = 4 * _MIB, growth_bytes: int = 64 * _MIB, min_interval_s: float = 1.0
    ) -> None:
        self._trim = _malloc_trim()
        self._body_bytes = body_bytes
        self._growth_bytes = growth_bytes
        self._interval = min_interval_s
        self._baseline = resident_bytes() or 0
        self._last = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.trims = 0  # trims run since the start

    @property
    def available(self) -> bool:
        return self._trim is not None

    def after_request(self, body_bytes: int) -> None:
        """Called as a request ends (on the event loop) with the bytes its body had."""
        if self._trim is None:
            return
        if body_bytes < self._body_bytes:
            rss = resident_bytes()
            if rss is None or rss - self._baseline < self._growth_bytes:
                return
        if self._task is not None and not self._task.done():
            self._again = True  # freed after the running trim looked: trim once more after it
            return
        self._task = asyncio.get_running_loop().create_task(self._release(), name="vlserve-malloc-trim")

    async def _release(self) -> None:
        assert self._trim is not None
        self._again = True
        while self._again:
            self._again = False
            await asyncio.sleep(max(0.0, self._last + self._interval - time.monotonic()))
            before = resident_bytes() or 0
            await asyncio.to_thread(self._trim, 0)
            self._last = time.monotonic()
            self._baseline = resident_bytes() or 0
            self.trims += 1
            log.debug("malloc_trim: resident memory %d -> %d MiB", before // _MIB, self._baseline // _MIB)
