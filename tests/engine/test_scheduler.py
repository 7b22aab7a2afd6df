"""The request queue: batching, back-pressure, cancellation, failure isolation."""

import asyncio
import threading

import pytest

from vlserve.engine.base import Delta, EngineRequest, SamplingParams
from vlserve.engine.transformers.prompting import Prompt
from vlserve.engine.transformers.scheduler import Scheduler
from vlserve.errors import RateLimitError, ServerError


class RecordingRunner:
    """Emits one delta per request: the batch it was part of. Can be held to fill the queue."""

    def __init__(self, hold: threading.Event | None = None, fail: bool = False) -> None:
        self.hold = hold
        self.fail = fail
        self.batches: list[list[str]] = []
        self.running = threading.Event()

    def run_batch(self, batch):
        self.running.set()
        if self.hold is not None:
            self.hold.wait(10)
        if self.fail:
            raise RuntimeError("boom")
        self.batches.append([r.prompt.input_ids[0] for r in batch])
        for request in batch:
            if not request.cancelled.is_set():
                request.emit(Delta(f"batch={len(batch)}", finish_reason="stop", token_ids=(1,)))


def prompt(tag: str) -> Prompt:
    return Prompt(EngineRequest(()), input_ids=[tag], mm_token_type_ids=[0])  # type: ignore[list-item]


async def collect(scheduler: Scheduler, tag: str) -> str:
    return "".join([d.text async for d in scheduler.stream(prompt(tag), SamplingParams(), 4)])


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_are_batched_up_to_the_limit():
    async def main():
        runner = RecordingRunner()
        scheduler = Scheduler(runner, max_batch_size=4, max_queue_size=64, batch_wait_s=0.05)
        scheduler.start()
        results = await asyncio.gather(*(collect(scheduler, str(i)) for i in range(6)))
        await scheduler.stop()
        return runner, results

    runner, results = run(main())
    assert sorted(len(b) for b in runner.batches) == [2, 4]
    assert sorted(results) == ["batch=2"] * 2 + ["batch=4"] * 4


def test_full_queue_is_refused_with_retry_after():
    async def main():
        hold = threading.Event()
        runner = RecordingRunner(hold)
        scheduler = Scheduler(runner, max_batch_size=1, max_queue_size=2, batch_wait_s=0)
        scheduler.start()
        first = asyncio.ensure_future(collect(scheduler, "running"))
        await asyncio.to_thread(runner.running.wait, 5)
        queued = [asyncio.ensure_future(collect(scheduler, f"q{i}")) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(RateLimitError) as err:
            await collect(scheduler, "overflow")
        hold.set()
        done = await asyncio.gather(first, *queued)
        await scheduler.stop()
        return err.value, done

    err, done = run(main())
    assert err.status_code == 429
    assert err.headers["Retry-After"] == "1"
    assert done == ["batch=1"] * 3  # the accepted requests were not disturbed


def test_cancelled_request_is_skipped_while_queued():
    async def main():
        hold = threading.Event()
        runner = RecordingRunner(hold)
        scheduler = Scheduler(runner, max_batch_size=1, max_queue_size=8, batch_wait_s=0)
        scheduler.start()
        first = asyncio.ensure_future(collect(scheduler, "a"))
        await asyncio.to_thread(runner.running.wait, 5)
        gone = asyncio.ensure_future(collect(scheduler, "gone"))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        third = asyncio.ensure_future(collect(scheduler, "c"))
        await asyncio.sleep(0.01)
        hold.set()
        await asyncio.gather(first, third)
        await scheduler.stop()
        return runner.batches

    assert run(main()) == [["a"], ["c"]]


def test_a_failing_batch_reports_an_error_and_the_scheduler_keeps_going():
    async def main():
        runner = RecordingRunner(fail=True)
        scheduler = Scheduler(runner, max_batch_size=2, max_queue_size=8, batch_wait_s=0)
        scheduler.start()
        with pytest.raises(ServerError):
            await collect(scheduler, "x")
        runner.fail = False
        ok = await collect(scheduler, "y")
        await scheduler.stop()
        return ok

    assert run(main()) == "batch=1"


def test_the_first_delta_says_how_long_the_request_waited_for_a_place_in_a_batch():
    async def main():
        hold = threading.Event()
        scheduler = Scheduler(RecordingRunner(hold), max_batch_size=1, max_queue_size=8, batch_wait_s=0)
        scheduler.start()

        async def deltas(tag: str) -> list[Delta]:
            return [d async for d in scheduler.stream(prompt(tag), SamplingParams(), 4)]

        first = asyncio.create_task(deltas("a"))
        second = asyncio.create_task(deltas("b"))  # waits while the first batch is held
        await asyncio.sleep(0.3)
        hold.set()
        results = await asyncio.gather(first, second)
        await scheduler.stop()
        return results

    first, second = run(main())
    assert first[0].queued_s is not None and first[0].queued_s < 0.2
    assert second[0].queued_s is not None and second[0].queued_s >= 0.25
