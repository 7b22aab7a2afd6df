"""The scheduler: continuous batching, back-pressure, cancellation, failure isolation, interactive first."""

import asyncio
import threading
import time
from dataclasses import replace

import pytest

from vlserve.engine.base import Delta, EngineRequest, SamplingParams
from vlserve.engine.transformers.prompting import Prompt
from vlserve.engine.transformers.scheduler import Scheduler, default_reserved_slots
from vlserve.errors import RateLimitError, ServerError


class StepRunner:
    """A running batch without a model: a request's tag says how many steps it takes ("a:3"; one by default).

    Each step emits one delta per row saying at which step, out of how many rows, it was made; the
    admissions are recorded with the step count at the time. Can be held (each step waits for ``hold``)
    or made to fail.
    """

    def __init__(self, hold: threading.Event | None = None, fail: bool = False, delay: float = 0.0) -> None:
        self.hold = hold
        self.fail = fail
        self.delay = delay
        self.rows: list[list] = []  # [request, steps left]
        self.steps = 0
        self.joined: list[tuple[int, list[str]]] = []  # (steps run before, tags)
        self.sizes: list[int] = []  # rows at each step
        self.running = threading.Event()

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def requests(self):
        return [request for request, _ in self.rows]

    def add(self, requests) -> None:
        self.joined.append((self.steps, [tag(r) for r in requests]))
        for request in requests:
            self.rows.append([request, int(tag(request).partition(":")[2] or 1)])
            request.emit(Delta("first", token_ids=(0,)))

    def step(self) -> None:
        self.running.set()
        if self.hold is not None:
            self.hold.wait(10)
        if self.fail:
            raise RuntimeError("boom")
        time.sleep(self.delay)
        self.steps += 1
        self.sizes.append(len(self.rows))
        for row in self.rows:
            request = row[0]
            row[1] -= 1
            if not request.cancelled.is_set():
                done = "stop" if row[1] <= 0 else None
                request.emit(Delta(f"[{self.steps}/{len(self.rows)}]", finish_reason=done, token_ids=(1,)))
        self.rows = [row for row in self.rows if row[1] > 0 and not row[0].cancelled.is_set()]

    def clear(self):
        left, self.rows = self.requests, []
        return left


def tag(request) -> str:
    return request.prompt.input_ids[0]


def prompt(name: str, background: bool = False) -> Prompt:
    return Prompt(EngineRequest((), background=background), input_ids=[name], mm_token_type_ids=[0])  # type: ignore[list-item]


async def collect(scheduler: Scheduler, name: str, background: bool = False) -> list[Delta]:
    return [d async for d in scheduler.stream(prompt(name, background), SamplingParams(), 4)]


def text(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_the_batch_up_to_the_limit_and_the_rest_join_as_slots_free():
    async def main():
        runner = StepRunner()
        scheduler = Scheduler(runner, max_batch_size=4, max_queue_size=64, batch_wait_s=0.05)
        scheduler.start()
        names = ["a:2", "b:2", "c:5", "d:5", "e:2", "f:2"]
        results = await asyncio.gather(*(collect(scheduler, n) for n in names))
        await scheduler.stop()
        return runner, results

    runner, results = run(main())
    assert runner.joined[0] == (0, ["a:2", "b:2", "c:5", "d:5"])  # simultaneous arrivals: one prefill
    assert runner.joined[1] == (2, ["e:2", "f:2"])  # a and b ended at step 2: their slots went at once
    assert max(runner.sizes) == 4
    assert text(results[4]) == "first[3/4][4/4]"  # joined a running batch, beside c and d
    assert all(r[-1].finish_reason == "stop" for r in results)


def test_a_request_arriving_mid_decode_joins_at_the_next_step():
    async def main():
        hold = threading.Event()
        runner = StepRunner(hold)
        scheduler = Scheduler(runner, max_batch_size=4, max_queue_size=8, batch_wait_s=0)
        scheduler.start()
        long = asyncio.ensure_future(collect(scheduler, "long:6"))
        await asyncio.to_thread(runner.running.wait, 5)  # step 1 is under way
        late = asyncio.ensure_future(collect(scheduler, "late:1"))
        await asyncio.sleep(0.05)
        hold.set()
        results = await asyncio.gather(long, late)
        await scheduler.stop()
        return runner, results

    runner, (long, late) = run(main())
    assert runner.joined == [(0, ["long:6"]), (1, ["late:1"])]
    assert text(late) == "first[2/2]"
    assert len(long) == 7  # its own answer did not change: first token and six steps


def test_full_queue_is_refused_with_retry_after():
    async def main():
        hold = threading.Event()
        runner = StepRunner(hold)
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
    assert [(len(d), d[-1].finish_reason) for d in done] == [(2, "stop")] * 3  # the accepted ones were not disturbed


def test_cancelled_request_is_skipped_while_queued_and_leaves_the_batch_when_running():
    async def main():
        hold = threading.Event()
        runner = StepRunner(hold, delay=0.01)
        scheduler = Scheduler(runner, max_batch_size=1, max_queue_size=8, batch_wait_s=0)
        scheduler.start()
        first = asyncio.ensure_future(collect(scheduler, "a"))
        await asyncio.to_thread(runner.running.wait, 5)
        gone = asyncio.ensure_future(collect(scheduler, "gone"))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        long = scheduler.stream(prompt("c:500"), SamplingParams(), 4)
        started = asyncio.ensure_future(long.__anext__())
        await asyncio.sleep(0.01)
        hold.set()
        await first
        await started  # c is running
        last = asyncio.ensure_future(collect(scheduler, "d"))  # and d waits for its slot
        await asyncio.sleep(0.05)
        await long.aclose()  # c's client goes away mid-answer: d takes its slot at the next step
        rest = await last
        await scheduler.stop()
        return runner, rest

    runner, rest = run(main())
    assert [tags for _, tags in runner.joined] == [["a"], ["c:500"], ["d"]]
    assert runner.steps < 100 and rest[-1].finish_reason == "stop"


def test_a_failing_step_reports_an_error_and_the_scheduler_keeps_going():
    async def main():
        runner = StepRunner(fail=True)
        scheduler = Scheduler(runner, max_batch_size=2, max_queue_size=8, batch_wait_s=0)
        scheduler.start()
        with pytest.raises(ServerError):
            await collect(scheduler, "x")
        runner.fail = False
        ok = await collect(scheduler, "y")
        await scheduler.stop()
        return ok

    assert text(run(main())) == "first[1/1]"


def test_stop_fails_the_queued_and_running_requests_cleanly():
    async def main():
        hold = threading.Event()
        runner = StepRunner(hold)
        scheduler = Scheduler(runner, max_batch_size=1, max_queue_size=8, batch_wait_s=0)
        scheduler.start()
        running = asyncio.ensure_future(collect(scheduler, "a:100"))
        await asyncio.to_thread(runner.running.wait, 5)
        queued = asyncio.ensure_future(collect(scheduler, "b"))
        await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(scheduler.stop())
        hold.set()
        await stopping
        return await asyncio.gather(running, queued, return_exceptions=True)

    for outcome in run(main()):
        assert isinstance(outcome, ServerError) and "shutting down" in outcome.message


def test_the_first_delta_says_how_long_the_request_waited_for_a_place_in_the_batch():
    async def main():
        hold = threading.Event()
        scheduler = Scheduler(StepRunner(hold), max_batch_size=1, max_queue_size=8, batch_wait_s=0)
        scheduler.start()
        first = asyncio.create_task(collect(scheduler, "a"))
        second = asyncio.create_task(collect(scheduler, "b"))  # waits while the first one's step is held
        await asyncio.sleep(0.3)
        hold.set()
        results = await asyncio.gather(first, second)
        await scheduler.stop()
        return results

    first, second = run(main())
    assert first[0].queued_s is not None and first[0].queued_s < 0.2
    assert second[0].queued_s is not None and second[0].queued_s >= 0.25


def test_a_share_of_the_slots_is_kept_for_interactive_requests():
    assert [default_reserved_slots(n) for n in (1, 2, 4, 8, 16)] == [0, 1, 1, 2, 4]


def test_an_interactive_request_joins_within_one_step_of_a_batch_full_of_background_pages():
    async def main():
        runner = StepRunner()
        scheduler = Scheduler(runner, max_batch_size=4, max_queue_size=64, batch_wait_s=0.05)
        scheduler.start()
        pages = [asyncio.ensure_future(collect(scheduler, f"page{i}:40", background=True)) for i in range(8)]
        while runner.steps < 5:  # the pages are decoding
            await asyncio.sleep(0.001)
        submitted_at = runner.steps
        chat = await collect(scheduler, "chat:3")
        await asyncio.gather(*pages)
        await scheduler.stop()
        return runner, submitted_at, chat

    runner, submitted_at, chat = run(main())
    assert runner.joined[0] == (0, ["page0:40", "page1:40", "page2:40"])  # one slot kept free
    joined_at = next(steps for steps, tags in runner.joined if tags == ["chat:3"])
    assert joined_at - submitted_at <= 1  # its first token waited for at most the step in progress
    assert max(runner.sizes) == 4 and chat[-1].finish_reason == "stop"


def test_waiting_interactive_requests_go_before_waiting_background_ones():
    async def main():
        hold = threading.Event()
        runner = StepRunner(hold)
        scheduler = Scheduler(runner, max_batch_size=2, max_queue_size=64, batch_wait_s=0, reserved_slots=0)
        scheduler.start()
        first = [asyncio.ensure_future(collect(scheduler, f"chat{i}:2")) for i in range(2)]
        await asyncio.to_thread(runner.running.wait, 5)
        page = asyncio.ensure_future(collect(scheduler, "page:1", background=True))
        await asyncio.sleep(0.01)
        later = asyncio.ensure_future(collect(scheduler, "chat2:1"))
        await asyncio.sleep(0.01)
        hold.set()
        await asyncio.gather(*first, page, later)
        await scheduler.stop()
        return runner

    joined = [tags for _, tags in run(main()).joined]
    assert joined[1] == ["chat2:1", "page:1"]  # the chat came after the page but was admitted first


def test_background_flag_defaults_off_and_comes_from_the_engine_request():
    request = EngineRequest(())
    assert request.background is False and replace(request, background=True).background
