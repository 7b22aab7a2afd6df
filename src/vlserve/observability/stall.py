"""The stalled-engine check: requests wait on the engine, yet no token has come out for too long.

A hung GPU (a wedged kernel, a lost device, a deadlocked collective) leaves the engine process up and its
own ``/health`` green while every request hangs. :class:`StallWatch` sees it from the outside, the same
way for every backend: the generation service wraps each request's stream of deltas with
:meth:`StallWatch.watch`, which times every wait for the engine's next delta.

The engine is stalled when at least one request is waiting on it and, for ``timeout_s`` seconds, no
delta has come out of any request and no waiting request began waiting. Hence:

- a request counts from when it is handed to the engine; one queued behind others waits while they
  produce tokens, and those tokens are progress, so a busy queue is not a stall;
- a request whose client reads slowly is not waiting on the engine (the engine is waiting on the
  client), so a stalled reader never makes the engine look stalled;
- a whole (non-streamed) answer still counts per delta: the backends generate token by token even
  when the client waits for the whole answer;
- a prefill longer than ``timeout_s`` (a huge prompt on a CPU) looks like a stall: set it above that.

The state is computed when read (health probe, scrape, new request) and when a token comes out, so a
stall that ends between two probes is still counted. Everything runs on the event loop.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from vlserve.engine.base import Delta

log = logging.getLogger("vlserve.engine")


@dataclass(frozen=True)
class Stall:
    idle_s: float  # seconds without a token while requests wait on the engine
    waiting: int  # requests waiting on the engine now

    @property
    def detail(self) -> str:
        requests = "request" if self.waiting == 1 else "requests"
        verb = "runs" if self.waiting == 1 else "run"
        return f"no token for {self.idle_s:.0f} s while {self.waiting} {requests} {verb}"


class StallWatch:
    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s  # 0: the check is off
        self._clock = clock
        self._waits: OrderedDict[int, float] = OrderedDict()  # wait ticket → when it began, oldest first
        self._tickets = itertools.count()
        self._last_token = -math.inf
        self._stalled_since: float | None = None  # when the current stall began, while stalled
        self.stalls = 0  # times the engine went from progressing to stalled

    @property
    def enabled(self) -> bool:
        return self.timeout_s > 0

    def check(self) -> Stall | None:
        """The stall now, or None while the engine progresses (always None when the check is off)."""
        if not self.enabled:
            return None
        now = self._clock()
        stall = self._stall(now)
        if stall is not None and self._stalled_since is None:
            self._stalled_since = now - stall.idle_s
            self.stalls += 1
            log.warning("the engine is stalled: %s", stall.detail)
        elif stall is None and self._stalled_since is not None:
            self._recovered(now)
        return stall

    def _stall(self, now: float) -> Stall | None:
        if not self._waits:
            return None
        since = max(self._last_token, next(iter(self._waits.values())))
        idle = now - since
        return Stall(idle, len(self._waits)) if idle > self.timeout_s else None

    def _recovered(self, now: float) -> None:
        assert self._stalled_since is not None
        log.info("the engine is progressing again after %.0f s without a token", now - self._stalled_since)
        self._stalled_since = None

    def _progress(self) -> None:
        now = self._clock()
        if now - self._last_token > self.timeout_s:  # only then can this token end a stall
            self.check()  # a stall no probe saw is still counted
            if self._stalled_since is not None:
                self._recovered(now)
        self._last_token = now

    async def watch(self, deltas: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        """``deltas`` unchanged, each wait for the next one timed; closing this closes ``deltas``."""
        if not self.enabled:
            async for delta in deltas:
                yield delta
            return
        try:
            while True:
                ticket = next(self._tickets)
                self._waits[ticket] = self._clock()
                try:
                    delta = await anext(deltas, None)
                    if delta is not None:
                        self._progress()  # while this wait still counts, so a stall it ends is seen
                finally:
                    del self._waits[ticket]
                if delta is None:
                    return
                yield delta
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]
