"""The stalled-engine check on its own, on a hand-driven clock: what counts as a stall and what must not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from vlserve.engine.base import Delta
from vlserve.observability.stall import StallWatch

TIMEOUT = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tokens:
    """An engine's stream whose next delta comes out only when the test says so."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delta | None] = asyncio.Queue()

    def put(self, text: str = "x", last: bool = False) -> None:
        self.queue.put_nowait(Delta(text, "stop" if last else None))

    async def stream(self) -> AsyncIterator[Delta]:
        while True:
            delta = await self.queue.get()
            if delta is None:
                return
            yield delta
            if delta.finish_reason is not None:
                return


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_no_request_waiting_is_never_a_stall_however_long_the_engine_is_idle():
    clock = Clock()
    watch = StallWatch(TIMEOUT, clock)
    clock.now += 3600
    assert watch.check() is None and watch.stalls == 0


def test_a_wait_longer_than_the_timeout_is_a_stall_until_a_token_comes_out(caplog):
    async def main():
        clock = Clock()
        watch = StallWatch(TIMEOUT, clock)
        engine = Tokens()
        reader = asyncio.create_task(anext(watch.watch(engine.stream())))
        await settle()
        clock.now += TIMEOUT - 1
        assert watch.check() is None  # a long prefill within the timeout is not a stall
        clock.now += 2
        stall = watch.check()
        assert stall is not None and stall.detail == "no token for 11 s while 1 request runs"
        assert watch.check() is not None and watch.stalls == 1  # one transition, however often it is read
        engine.put()
        await reader
        assert watch.check() is None and watch.stalls == 1

    with caplog.at_level(logging.INFO, logger="vlserve.engine"):
        asyncio.run(main())
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "the engine is stalled: no token for 11 s while 1 request runs"),
        ("INFO", "the engine is progressing again after 11 s without a token"),
    ]


def test_a_request_queued_behind_others_that_produce_tokens_is_not_a_stall():
    async def main():
        clock = Clock()
        watch = StallWatch(TIMEOUT, clock)
        running, queued = Tokens(), Tokens()
        busy = watch.watch(running.stream())
        waiting = asyncio.create_task(anext(watch.watch(queued.stream())))  # waits its turn the whole time
        await settle()
        for _ in range(5):
            clock.now += TIMEOUT / 2
            running.put()
            await anext(busy)
            assert watch.check() is None
        clock.now += TIMEOUT + 1  # the running one ended; the queued one never started
        await busy.aclose()
        assert watch.check() is not None  # now nothing progresses while it waits
        waiting.cancel()

    asyncio.run(main())


def test_a_client_that_reads_slowly_does_not_make_the_engine_look_stalled():
    async def main():
        clock = Clock()
        watch = StallWatch(TIMEOUT, clock)
        engine = Tokens()
        stream = watch.watch(engine.stream())
        engine.put()
        await anext(stream)
        clock.now += 10 * TIMEOUT  # the client holds the stream without reading: nobody waits on the engine
        assert watch.check() is None
        await stream.aclose()

    asyncio.run(main())


def test_a_stall_that_ends_before_any_probe_looked_is_still_counted():
    async def main():
        clock = Clock()
        watch = StallWatch(TIMEOUT, clock)
        engine = Tokens()
        reader = asyncio.create_task(anext(watch.watch(engine.stream())))
        await settle()
        clock.now += 3 * TIMEOUT
        engine.put()
        await reader
        assert watch.stalls == 1 and watch.check() is None

    asyncio.run(main())


def test_a_request_that_arrives_during_a_stall_does_not_restart_the_clock():
    async def main():
        clock = Clock()
        watch = StallWatch(TIMEOUT, clock)
        hung, late = Tokens(), Tokens()
        first = asyncio.create_task(anext(watch.watch(hung.stream())))
        await settle()
        clock.now += TIMEOUT - 1
        second = asyncio.create_task(anext(watch.watch(late.stream())))
        await settle()
        clock.now += 2
        stall = watch.check()
        assert stall is not None and stall.waiting == 2 and stall.detail.endswith("while 2 requests run")
        first.cancel()
        second.cancel()
        await settle()
        assert watch.check() is None  # the hanging requests went away: nothing waits on the engine

    asyncio.run(main())


def test_timeout_zero_turns_the_check_off():
    async def main():
        clock = Clock()
        watch = StallWatch(0, clock)
        engine = Tokens()
        reader = asyncio.create_task(anext(watch.watch(engine.stream())))
        await settle()
        clock.now += 3600
        assert watch.check() is None
        engine.put()
        assert (await reader).text == "x"

    asyncio.run(main())
