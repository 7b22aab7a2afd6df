"""Audit records written off the request path, in batches.

The audit middleware hands each request's entry to :class:`AuditWriter` when the response has ended and
returns at once: the next request on that connection never waits for a database commit. One background
task writes whatever has queued up within ``LINGER_S`` of the first entry in one transaction (one commit
for a burst of requests), so the cost per record falls as the load rises. The queue is bounded
(``max_pending``): past it a request waits for the writer instead of dropping its record. At shutdown the
queue is written out before the database closes; a record is lost only if the process dies within the
moment between a response and its write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from vlserve.security.audit import AuditEntry, AuditStore

log = logging.getLogger("vlserve.audit")

MAX_PENDING = 10_000  # entries waiting for the writer before a request waits for it
MAX_BATCH = 500  # entries written in one transaction
LINGER_S = 0.05  # after a first entry, how long more may gather before their transaction
CLOSE_TIMEOUT_S = 10.0  # how long shutdown waits for the queue to be written


def _failure(entries: Sequence[AuditEntry], exc: Exception) -> str:
    if len(entries) == 1:
        return f"audit: writing the record of {entries[0].method} {entries[0].endpoint} failed: {exc}"
    return f"audit: writing {len(entries)} records failed: {exc}"


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        *,
        max_pending: int = MAX_PENDING,
        max_batch: int = MAX_BATCH,
        linger_s: float = LINGER_S,
    ) -> None:
        self.store = store
        self._linger_s = linger_s
        self._queue: asyncio.Queue[AuditEntry] = asyncio.Queue(max_pending)
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vlserve-audit-writer")

    async def submit(self, entry: AuditEntry) -> None:
        """Queue ``entry``; waits only while ``max_pending`` entries are still unwritten."""
        await self._queue.put(entry)

    async def drained(self) -> None:
        """Returns once every entry submitted so far has been written (or its write has failed)."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued (at most ``CLOSE_TIMEOUT_S``), then stop the writer."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.drained(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.error("audit: %d record(s) were not written before shutdown", self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            entries = [await self._queue.get()]
            await asyncio.sleep(self._linger_s)  # the requests of the next moments join this transaction
            while len(entries) < self._max_batch and not self._queue.empty():
                entries.append(self._queue.get_nowait())
            try:
                await asyncio.to_thread(self.store.write_many, entries)
            except Exception as exc:  # the database may be down for a while: logged, the server serves on
                log.error("%s", _failure(entries, exc))
            finally:
                for _ in entries:
                    self._queue.task_done()
