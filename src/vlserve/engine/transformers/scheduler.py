"""An asyncio request queue that groups concurrent requests into batches for a model runner.

Requests wait in a bounded queue (a full queue is a 429 with ``Retry-After``). One worker thread
runs one batch at a time, so model work never blocks the event loop. The runner reports tokens
through :meth:`GenerationRequest.emit`, which is safe to call from the worker thread. A request
whose consumer goes away is marked cancelled: skipped if still queued, stopped if running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from vlserve.engine.background import Background
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
    started_at: float | None = None  # when its batch began
    request_id: str = field(default_factory=current_request_id.get)

    def emit(self, event: Delta | VLServeError) -> None:
        """Hand an event to the waiting consumer; callable from any thread."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class BatchRunner(Protocol):
    def run_batch(self, batch: Sequence[GenerationRequest]) -> None:
        """Generate for every request in ``batch``, emitting deltas; blocking, runs in a worker thread."""
        ...


class Scheduler:
    def __init__(
        self,
        runner: BatchRunner,
        *,
        max_batch_size: int,
        max_queue_size: int,
        batch_wait_s: float,
    ) -> None:
        self._runner = runner
        self._max_batch_size = max_batch_size
        self._batch_wait_s = batch_wait_s
        self._queue: asyncio.Queue[GenerationRequest] = asyncio.Queue(maxsize=max_queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlserve-model")
        self._task = Background("vlserve-scheduler")
        self.batch_sizes: list[int] = []  # the size of every batch run, newest last (bounded)
        self.running = 0  # requests in the batch being generated

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task.start(self._loop)

    async def stop(self) -> None:
        await self._task.stop()
        while not self._queue.empty():
            self._queue.get_nowait().emit(ServerError("the server is shutting down"))
        self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, prompt: Prompt, params: SamplingParams, max_tokens: int) -> GenerationRequest:
        request = GenerationRequest(prompt, params, max_tokens, asyncio.get_running_loop())
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise RateLimitError(
                f"the server is at capacity ({self._queue.maxsize} requests waiting); retry shortly",
                headers={"Retry-After": "1"},
            ) from None
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
                if first and request.started_at is not None:  # how long it waited for a place in a batch
                    event = dataclasses.replace(event, queued_s=max(0.0, request.started_at - request.enqueued_at))
                first = False
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            request.cancelled.set()

    async def _next_batch(self) -> list[GenerationRequest]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self._batch_wait_s
        while len(batch) < self._max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [r for r in batch if not r.cancelled.is_set()]

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
            log.info(
                "running batch of %d (queue depth %d): %s",
                len(batch),
                self._queue.qsize(),
                " ".join(r.request_id for r in batch),
            )
            self.running = len(batch)
            started = time.monotonic()
            for request in batch:
                request.started_at = started
            try:
                await loop.run_in_executor(self._executor, self._runner.run_batch, batch)
            except Exception:  # a failed batch must not stop the server
                log.exception("batch of %d failed", len(batch))
                for request in batch:
                    request.emit(ServerError("generation failed; see the server log"))
            finally:
                self.running = 0
