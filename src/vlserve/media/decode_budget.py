"""A server-wide budget of image pixels being decoded at once.

A small file can decode to a large image: a 35 KB PNG of 6000x6000 pixels holds 36 M pixels, 144 MB as
RGB. The per-image and per-request pixel limits bound one request, not many at once, so every decode of
an untrusted image takes its pixels (width x height, from the header) from this budget first and gives
them back when its worker thread ends: with an image, with an error, or after its request was cancelled
(the thread cannot be stopped, so its pixels stay counted until it ends). At most ``limit`` pixels are
then being decoded at any time, however many requests arrive together.

A decode that does not fit waits its turn, first come first served, so a large image is never overtaken
for ever by smaller ones. Waiting holds no thread and no pixels, and each image is taken on its own, so
two requests never each hold part of the budget while waiting for the rest (no deadlock). A decode that
waited ``wait_s`` seconds is refused with 503 ``decode_budget_exhausted`` and ``Retry-After``. An image
larger than the whole budget is decoded alone (the settings keep the budget at least
``VLSERVE_MAX_IMAGE_PIXELS``, so this does not happen in a server).

The pixels decoded are only part of the story: glibc keeps memory freed in a thread's heap for that
thread, so with many decode threads the process's RSS would follow the threads, not the budget.
:func:`return_freed_images` has Pillow allocate large images in blocks that glibc maps on their own and
gives back to the system the moment they are freed.

The default budget (:func:`default_budget_pixels`) is the smaller of a share of the memory available at
start (the machine's or the cgroup's) divided by the bytes a decode holds per pixel, and one largest
image per usable CPU (more decodes at once than CPUs finish no sooner, they only hold more memory).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from PIL import Image

from vlserve.errors import ServiceUnavailableError

T = TypeVar("T")

log = logging.getLogger("vlserve.media")

BYTES_PER_PIXEL = 8  # a decode holds the image as decoded (PIL: up to 4 bytes a pixel) and its RGB copy (4)
MEMORY_SHARE = 0.25  # of the memory available at start, at most, for images being decoded
RETRY_AFTER_S = 1
PILLOW_BLOCK_BYTES = 64 * 1024 * 1024  # above glibc's largest mmap threshold (32 MB on 64-bit)
_CGROUP = Path("/sys/fs/cgroup")


class DecodeBudget:
    """At most ``limit`` pixels decoded at once (0: no limit, only counted); waiters are served in order."""

    def __init__(self, limit: int, *, wait_s: float) -> None:
        if limit < 0 or wait_s < 0:
            raise ValueError("the decode budget and its wait must not be negative")
        self.limit = limit
        self.wait_s = wait_s
        self.in_use = 0  # pixels being decoded now
        self.peak = 0  # the most pixels decoded at once since the start (the high-water mark)
        self.refused = 0  # decodes refused after waiting ``wait_s``
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @classmethod
    def sized(cls, limit: int | None, *, max_image_pixels: int, wait_s: float) -> DecodeBudget:
        """The budget the settings ask for: ``limit`` pixels (0: none), or when unset the default for this
        machine (:func:`default_budget_pixels`)."""
        if limit is None:
            limit = default_budget_pixels(max_image_pixels)
            log.info(
                "image decoding: at most %d pixels at once (%.0f MB; VLSERVE_DECODE_BUDGET_PIXELS)",
                limit, limit * BYTES_PER_PIXEL / 1e6,
            )  # fmt: skip
        return cls(limit, wait_s=wait_s)

    @property
    def waiting(self) -> int:
        """Decodes waiting for pixels now."""
        return sum(1 for _, waiter in self._waiters if not waiter.done())

    async def run(self, pixels: int, decode: Callable[[], T]) -> T:
        """``decode()`` in a worker thread once ``pixels`` fit in the budget; they are given back when the
        thread ends. Raises ServiceUnavailableError (503) when they did not fit within ``wait_s``."""
        await self._take(pixels)
        work = asyncio.ensure_future(asyncio.to_thread(decode))
        work.add_done_callback(partial(self._give_back, pixels))
        return await asyncio.shield(work)  # a cancelled caller leaves the thread to finish, counted

    async def _take(self, pixels: int) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append((pixels, waiter))
        self._grant()  # at once, when nobody is waiting before it and it fits
        if waiter.done():
            return
        timer = loop.call_later(self.wait_s, self._expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(pixels)  # granted as the caller was cancelled: hand them on
            else:
                self._grant()  # it may have headed the queue: the next in line may fit now
            raise
        finally:
            timer.cancel()

    def _fits(self, pixels: int) -> bool:
        return self.limit == 0 or self.in_use == 0 or self.in_use + pixels <= self.limit

    def _add(self, pixels: int) -> None:
        self.in_use += pixels
        self.peak = max(self.peak, self.in_use)

    def _give_back(self, pixels: int, *_: object) -> None:
        self.in_use -= pixels
        self._grant()

    def _grant(self) -> None:
        """Hand pixels to the waiters in order, while the first fits (the rest wait behind it)."""
        while self._waiters:
            pixels, waiter = self._waiters[0]
            if waiter.done():  # cancelled or expired
                self._waiters.popleft()
                continue
            if not self._fits(pixels):
                return
            self._waiters.popleft()
            self._add(pixels)
            waiter.set_result(None)

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        self.refused += 1
        waiter.set_exception(
            ServiceUnavailableError(
                f"the server is decoding {self.limit} pixels of images at once, its limit "
                f"(VLSERVE_DECODE_BUDGET_PIXELS), and this image waited {self.wait_s:g} s for its turn; retry shortly",
                code="decode_budget_exhausted",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        )
        self._grant()


def return_freed_images() -> None:
    """Have Pillow allocate an image's pixels in blocks of up to ``PILLOW_BLOCK_BYTES`` (its default: 16 MB),
    unless the operator set ``PILLOW_BLOCK_SIZE``. glibc maps every allocation above 32 MB on its own and unmaps
    it when it is freed, so a large decoded image's memory goes back to the system at once. With 16 MB blocks,
    glibc raises its mmap threshold after the first one is freed and keeps the later ones in the heap of the
    thread that decoded them: 32 images of 6000x6000 decoded two at a time by six threads took the RSS 705 MB
    up and left 600 MB of it, against 520 MB and 45 MB with 64 MB blocks (docs/performance.md). The price is
    the page faults of fresh memory: about 0.1 s of system time per 36 M-pixel decode."""
    if "PILLOW_BLOCK_SIZE" not in os.environ:
        Image.core.set_block_size(PILLOW_BLOCK_BYTES)


def default_budget_pixels(max_image_pixels: int) -> int:
    """The budget when none is set: the smaller of ``MEMORY_SHARE`` of the available memory over
    ``BYTES_PER_PIXEL`` and one ``max_image_pixels`` image per usable CPU, never below one such image."""
    by_cpus = usable_cpus() * max_image_pixels
    memory = available_memory()
    by_memory = by_cpus if memory is None else int(memory * MEMORY_SHARE / BYTES_PER_PIXEL)
    return max(max_image_pixels, min(by_cpus, by_memory))


def usable_cpus() -> int:
    """CPUs this process may run on, within the cgroup's CPU quota when there is one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _read(_CGROUP / "cpu.max")  # cgroup v2: "max 100000" or "<quota> <period>"
    if quota is not None:
        limit, _, period = quota.partition(" ")
        if limit.isdigit() and period.strip().isdigit() and int(period) > 0:
            cpus = min(cpus, max(1, math.ceil(int(limit) / int(period))))
    return max(1, cpus)


def available_memory() -> int | None:
    """Bytes of memory available now: the machine's (MemAvailable), less where a cgroup limit leaves less."""
    available = None
    meminfo = _read(Path("/proc/meminfo"))
    for line in (meminfo or "").splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
    for limit_file, usage_file in (
        (_CGROUP / "memory.max", _CGROUP / "memory.current"),  # cgroup v2
        (_CGROUP / "memory" / "memory.limit_in_bytes", _CGROUP / "memory" / "memory.usage_in_bytes"),  # v1
    ):
        limit, usage = _read(limit_file), _read(usage_file)
        if limit is not None and usage is not None and limit.isdigit() and usage.isdigit():
            left = max(0, int(limit) - int(usage))
            available = left if available is None else min(available, left)
            break
    return available


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
