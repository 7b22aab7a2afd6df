"""Requests refused for want of a valid key (401), audited without letting a flood of them fill the table.

The first 401 of a client (and of the revoked or expired key it presented, if any) in a window of
``window_s`` seconds is recorded as itself, with its trace id, so a misconfigured client shows up at once.
The others of that window are only counted, and when the window ends one record stands for all of them
(``count``, the last one's endpoint and time, the longest latency). A client sending 4,000 requests
without a key in a minute leaves two records, not 4,000; the metrics count every one
(``vlserve_errors_total{code="missing_api_key"}``). At most ``max_clients`` clients are tallied apart in
a window; past that, the rest are tallied together under the client ``*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vlserve.security.audit import AuditEntry

WINDOW_S = 60.0
MAX_CLIENTS = 10_000
OVERFLOW = "*"


@dataclass
class _Tally:
    opened: float  # clock time of the window's first refusal
    last: AuditEntry | None = None  # the latest counted refusal (None: only the first so far)
    count: int = 0  # refusals counted after the first
    slowest_ms: int = 0


class RefusalTally:
    def __init__(
        self,
        submit: Callable[[AuditEntry], Awaitable[None]],
        *,
        window_s: float = WINDOW_S,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._submit = submit  # the audit writer's queue
        self._window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._open: dict[tuple[str | None, str | None], _Tally] = {}
        self._task: asyncio.Task[None] | None = None

    async def record(self, entry: AuditEntry) -> None:
        """Audit one 401: written now if it is its client's first of the window, else counted."""
        now = self._clock()
        key = (entry.client, entry.key_id)
        if key not in self._open and len(self._open) >= self._max_clients:
            key = (OVERFLOW, None)
            entry = dataclasses.replace(entry, client=OVERFLOW, key_id=None)
        tally = self._open.get(key)
        if tally is not None and now - tally.opened >= self._window_s:  # its window ended: close it first
            await self._close(key)
            tally = None
        if tally is None:
            self._open[key] = _Tally(opened=now)
            await self._submit(entry)
            return
        tally.last, tally.count = entry, tally.count + 1
        tally.slowest_ms = max(tally.slowest_ms, entry.latency_ms)

    async def flush(self, *, everything: bool = False) -> None:
        """Write the summary of every window that has ended (``everything``: of every window, at shutdown)."""
        now = self._clock()
        for key, tally in list(self._open.items()):
            if everything or now - tally.opened >= self._window_s:
                await self._close(key)

    async def _close(self, key: tuple[str | None, str | None]) -> None:
        tally = self._open.pop(key)
        if tally.last is None:
            return
        summary = dataclasses.replace(tally.last, trace_id="-", latency_ms=tally.slowest_ms, count=tally.count)
        await self._submit(summary)  # "-": the trace ids of the requests it counts are in the access log

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vlserve-audit-refusals")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._window_s / 4)
            await self.flush()

    async def close(self) -> None:
        """Stop the timer and write what is counted (before the audit writer closes)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush(everything=True)
