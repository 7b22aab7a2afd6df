"""Continuous batching: requests join the running batch at a step boundary and leave it when they end.

Requests wait in a bounded queue (a full queue is a 429 with ``Retry-After``). One worker thread
owns the model's running batch (a :class:`BatchRunner`) and loops: admit waiting requests into the
free slots (the runner prefills them together and merges them in), run one decode step, repeat.
A row that ends leaves at once, so its slot is free at the next step; model work never blocks the
event loop. The runner reports tokens through :meth:`GenerationRequest.emit`, which is safe to call
from the worker thread. A request whose consumer goes away is marked cancelled: skipped if still
queued, dropped from the batch at the next step if running.

Interactive before batch: requests marked ``background`` (document pages) take at most
``max_batch_size - reserved_slots`` slots, and a waiting interactive request is admitted before any
waiting background one. A chat request arriving while pages decode therefore joins at the next step
boundary: its first token waits for at most the step in progress, never for the pages to finish.
When the batch is empty, the first request waits up to ``batch_wait_s`` for others to be prefilled
with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vlserve.engine.base import Delta, SamplingParams
from vlserve.engine.transformers.prompting import Prompt
from vlserve.errors import RateLimitError, ServerError, VLServeError
from vlserve.observability.request_id import current_request_id

log = logging.getLogger("vlserve.scheduler")


@dataclass(eq=False)
class GenerationRequest:
    prompt: Prompt
    params: SamplingParams
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Delta | VLServeError] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None  # when it joined the running batch
    request_id: str = field(default_factory=current_request_id.get)

    @property
    def background(self) -> bool:
        """Background work (a document page): it gives way to interactive requests."""
        return self.prompt.request.background

    def emit(self, event: Delta | VLServeError) -> None:
        """Hand an event to the waiting consumer; callable from any thread."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class BatchRunner(Protocol):
    """The running batch; driven by one worker thread, between steps only."""

    @property
    def size(self) -> int:
        """Rows in the running batch."""
        ...

    @property
    def requests(self) -> list[GenerationRequest]:
        """The requests of the rows in the running batch."""
        ...

    def add(self, requests: Sequence[GenerationRequest]) -> None:
        """Prefill ``requests`` together and add them to the batch, emitting their first tokens."""
        ...

    def step(self) -> None:
        """One decode step for every row, emitting deltas; rows that end (or are cancelled) leave."""
        ...

    def clear(self) -> list[GenerationRequest]:
        """Drop the batch after a failure; returns the requests that had not ended."""
        ...


def default_reserved_slots(max_batch_size: int) -> int:
    """Slots kept for interactive requests: a quarter of the batch, at least one, never all of it."""
    return min(max_batch_size - 1, max(1, max_batch_size // 4))


class Scheduler:
    def __init__(
        self,
        runner: BatchRunner,
        *,
        max_batch_size: int,
        max_queue_size: int,
        batch_wait_s: float,
        reserved_slots: int | None = None,
    ) -> None:
        self._runner = runner
        self._max_batch_size = max_batch_size
        self._max_queue_size = max_queue_size
        self._batch_wait_s = batch_wait_s
        reserved = default_reserved_slots(max_batch_size) if reserved_slots is None else reserved_slots
        self._background_slots = max(1, max_batch_size - reserved)
        self._interactive: deque[GenerationRequest] = deque()
        self._background: deque[GenerationRequest] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.batch_sizes: list[int] = []  # the batch's size after each admission, newest last (bounded)
        self.running = 0  # requests in the running batch

    @property
    def queue_depth(self) -> int:
        return len(self._interactive) + len(self._background)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="vlserve-model", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        with self._wake:
            waiting = [*self._interactive, *self._background]
            self._interactive.clear()
            self._background.clear()
        for request in waiting:
            request.emit(ServerError("the server is shutting down"))

    def submit(self, prompt: Prompt, params: SamplingParams, max_tokens: int) -> GenerationRequest:
        request = GenerationRequest(prompt, params, max_tokens, asyncio.get_running_loop())
        with self._wake:
            if self.queue_depth >= self._max_queue_size:
                self._forget_cancelled()
            if self.queue_depth >= self._max_queue_size:
                raise RateLimitError(
                    f"the server is at capacity ({self._max_queue_size} requests waiting); retry shortly",
                    headers={"Retry-After": "1"},
                )
            (self._background if request.background else self._interactive).append(request)
            self._wake.notify_all()
        return request

    async def stream(self, prompt: Prompt, params: SamplingParams, max_tokens: int) -> AsyncIterator[Delta]:
        """Submit and yield deltas until the last; leaving early cancels the request."""
        request = self.submit(prompt, params, max_tokens)
        try:
            first = True
            while True:
                event = await request.events.get()
                if isinstance(event, VLServeError):
                    raise event
                if first and request.started_at is not None:  # how long it waited for a place in the batch
                    event = dataclasses.replace(event, queued_s=max(0.0, request.started_at - request.enqueued_at))
                first = False
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            request.cancelled.set()

    # --- the worker thread -----------------------------------------------------------------------

    def _forget_cancelled(self) -> None:
        for queue in (self._interactive, self._background):
            kept = [r for r in queue if not r.cancelled.is_set()]
            queue.clear()
            queue.extend(kept)

    def _work(self) -> None:
        runner = self._runner
        while True:
            with self._wake:
                while not self._stopping and runner.size == 0 and not self.queue_depth:
                    self._wake.wait()
                if self._stopping:
                    break
                if runner.size == 0:  # an idle batch: give simultaneous arrivals a moment to join together
                    deadline = time.monotonic() + self._batch_wait_s
                    while not self._stopping and self.queue_depth < self._max_batch_size:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._wake.wait(remaining)
                joining = self._admit()
            if joining:
                self._join(joining)
            if runner.size:
                self._step()
            self.running = runner.size
        for request in runner.clear():
            request.emit(ServerError("the server is shutting down"))
        self.running = 0

    def _admit(self) -> list[GenerationRequest]:
        """The waiting requests that take the free slots now: interactive ones first (called locked)."""
        running = self._runner.requests
        free = self._max_batch_size - len(running)
        background = sum(r.background for r in running)
        joining: list[GenerationRequest] = []
        while free > 0:
            if self._interactive:
                request = self._interactive.popleft()
            elif self._background and background < self._background_slots:
                request = self._background.popleft()
                background += 1
            else:
                break
            if request.cancelled.is_set():
                background -= request.background
                continue
            joining.append(request)
            free -= 1
        return joining

    def _join(self, joining: list[GenerationRequest]) -> None:
        started = time.monotonic()
        for request in joining:
            request.started_at = started
        size = self._runner.size + len(joining)
        self.batch_sizes = [*self.batch_sizes[-999:], size]
        log.info(
            "running batch of %d (%d joined, queue depth %d): %s",
            size,
            len(joining),
            self.queue_depth,
            " ".join(r.request_id for r in joining),
        )
        try:
            self._runner.add(joining)
        except Exception:  # a failed prefill fails the joiners only; the running rows go on
            log.exception("prefill of %d failed", len(joining))
            for request in joining:
                request.emit(ServerError("generation failed; see the server log"))

    def _step(self) -> None:
        try:
            self._runner.step()
        except Exception:  # a failed step must not stop the server
            failed = self._runner.clear()
            log.exception("a decode step of %d failed", len(failed))
            for request in failed:
                request.emit(ServerError("generation failed; see the server log"))
