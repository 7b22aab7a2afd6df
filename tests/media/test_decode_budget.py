"""The server-wide decode budget: at most so many pixels decoded at once; the rest wait their turn in order,
or get 503 with Retry-After; pixels come back on errors and cancellation, and only when the decode ends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from tests.support.images import chart, encode
from vlserve.errors import ImageError, ServiceUnavailableError
from vlserve.media import DecodeBudget, ImageCache, ImageFetcher, ImageLimits, MediaLoader
from vlserve.media.sources import EncodedImage
from vlserve.settings import Settings

LIMITS = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)


class Gate:
    """A decode that runs in its worker thread until the test opens the gate."""

    def __init__(self, result: str = "decoded") -> None:
        self._open = threading.Event()
        self.started = threading.Event()
        self.result = result

    def __call__(self) -> str:
        self.started.set()
        if not self._open.wait(10):
            raise TimeoutError("the test never opened the gate")
        return self.result

    def open(self) -> None:
        self._open.set()


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most 5 s) until ``condition`` holds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def start(budget: DecodeBudget, pixels: int, decode: Callable[[], str]) -> asyncio.Future[str]:
    return asyncio.ensure_future(budget.run(pixels, decode))


def test_a_decode_that_does_not_fit_waits_until_the_pixels_are_given_back():
    async def main():
        budget = DecodeBudget(100, wait_s=10)
        first, second = Gate("first"), Gate("second")
        running = start(budget, 60, first)
        await until(first.started.is_set)
        waiting = start(budget, 60, second)
        await asyncio.sleep(0)
        assert (budget.in_use, budget.waiting, second.started.is_set()) == (60, 1, False)
        first.open()
        second.open()
        assert (await running, await waiting) == ("first", "second")
        assert (budget.peak, budget.in_use, budget.waiting) == (60, 0, 0)

    asyncio.run(main())


def test_waiters_are_served_in_order_and_a_small_one_never_overtakes_a_large_one():
    async def main():
        budget = DecodeBudget(100, wait_s=10)
        a, b, c, d = Gate(), Gate(), Gate(), Gate()
        jobs = [start(budget, 100, a)]
        await until(a.started.is_set)
        jobs += [start(budget, 80, b), start(budget, 30, c), start(budget, 20, d)]
        await asyncio.sleep(0)
        a.open()
        await until(b.started.is_set)
        # 80 in use: 30 more do not fit, and the 20 that would must wait behind them
        assert (budget.in_use, budget.waiting, c.started.is_set(), d.started.is_set()) == (80, 2, False, False)
        b.open()
        await until(lambda: c.started.is_set() and d.started.is_set())
        assert budget.in_use == 50
        c.open()
        d.open()
        await asyncio.gather(*jobs)
        assert (budget.peak, budget.in_use) == (100, 0)

    asyncio.run(main())


def test_a_decode_that_waits_too_long_is_503_with_retry_after_naming_the_setting():
    async def main():
        budget = DecodeBudget(100, wait_s=0.1)
        held = Gate()
        holding = start(budget, 100, held)
        await until(held.started.is_set)
        never = Gate()
        with pytest.raises(ServiceUnavailableError) as info:
            await budget.run(10, never)
        error = info.value
        assert (error.status_code, error.code, error.headers) == (503, "decode_budget_exhausted", {"Retry-After": "1"})
        assert "VLSERVE_DECODE_BUDGET_PIXELS" in error.message
        assert (budget.refused, budget.waiting, never.started.is_set()) == (1, 0, False)
        held.open()
        await holding
        assert await budget.run(100, lambda: "next") == "next"  # the refused decode left nothing behind

    asyncio.run(main())


def test_pixels_come_back_when_a_decode_fails():
    def corrupt() -> str:
        raise ValueError("corrupt image")

    async def main():
        budget = DecodeBudget(100, wait_s=0.1)
        with pytest.raises(ValueError, match="corrupt image"):
            await budget.run(100, corrupt)
        assert budget.in_use == 0
        assert await budget.run(100, lambda: "next") == "next"

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_the_queue_and_the_one_behind_it_is_served():
    async def main():
        budget = DecodeBudget(100, wait_s=10)
        held, gone, behind = Gate(), Gate(), Gate("behind")
        holding = start(budget, 100, held)
        await until(held.started.is_set)
        cancelled, served = start(budget, 60, gone), start(budget, 60, behind)
        await asyncio.sleep(0)
        cancelled.cancel()  # the client went away while its image waited
        await asyncio.sleep(0)
        assert budget.waiting == 1
        held.open()
        behind.open()
        assert await served == "behind"
        assert cancelled.cancelled() and not gone.started.is_set()
        await holding
        assert budget.in_use == 0

    asyncio.run(main())


def test_a_cancelled_decode_keeps_its_pixels_until_its_thread_ends():
    async def main():
        budget = DecodeBudget(100, wait_s=10)
        decoding, next_one = Gate(), Gate("next")
        caller = start(budget, 100, decoding)
        await until(decoding.started.is_set)
        caller.cancel()  # the request is gone, but the thread decodes on: its memory is still taken
        with pytest.raises(asyncio.CancelledError):
            await caller
        waiting = start(budget, 50, next_one)
        await asyncio.sleep(0)
        assert (budget.in_use, budget.waiting) == (100, 1)
        decoding.open()
        next_one.open()
        assert await waiting == "next"
        assert (budget.peak, budget.in_use) == (100, 0)

    asyncio.run(main())


def test_an_image_larger_than_the_whole_budget_is_decoded_alone_not_refused():
    async def main():
        budget = DecodeBudget(100, wait_s=10)
        large, small = Gate("large"), Gate("small")
        first = start(budget, 150, large)
        await until(large.started.is_set)
        second = start(budget, 1, small)
        await asyncio.sleep(0)
        assert budget.waiting == 1
        large.open()
        small.open()
        assert (await first, await second) == ("large", "small")

    asyncio.run(main())


def test_the_budget_is_never_below_the_largest_image_allowed():
    with pytest.raises(ValidationError, match="decode_budget_pixels"):
        Settings(max_image_pixels=20_000_000, decode_budget_pixels=10_000_000)
    assert Settings(max_image_pixels=20_000_000, decode_budget_pixels=20_000_000).decode_budget_pixels == 20_000_000
    assert Settings(decode_budget_pixels=0).decode_budget_pixels == 0  # no limit
    sized = DecodeBudget.sized(None, max_image_pixels=20_000_000, wait_s=1)
    assert sized.limit >= 20_000_000


def decode_with(loader: MediaLoader, *images: bytes) -> asyncio.Future:
    encoded = [EncodedImage(data, f"messages[0].content[{i}].image_url") for i, data in enumerate(images)]
    return asyncio.ensure_future(loader.decode(encoded, max_request_pixels=None, target_pixels=None))


def test_a_cache_miss_decodes_within_the_budget_and_a_hit_takes_none_of_it():
    seen, unseen = encode(chart(1, (400, 300))), encode(chart(2, (400, 300)))

    async def main():
        async with ImageFetcher(timeout=1, max_redirects=0, max_bytes=LIMITS.max_bytes, allowlist=[]) as fetcher:
            budget = DecodeBudget(LIMITS.max_pixels, wait_s=0.2)
            loader = MediaLoader(fetcher, LIMITS, cache=ImageCache(64 * 1024 * 1024, 300), budget=budget)
            await decode_with(loader, seen)
            assert budget.peak == 400 * 300  # the miss was decoded within the budget
            busy = Gate()
            holding = start(budget, LIMITS.max_pixels, busy)  # every pixel of the budget taken
            await until(busy.started.is_set)
            (hit,) = await decode_with(loader, seen)  # decoded before: no wait
            assert hit.image.size == (400, 300)
            with pytest.raises(ServiceUnavailableError):  # not decoded before: it waits its turn, and times out
                await decode_with(loader, unseen)
            busy.open()
            await holding
            (decoded,) = await decode_with(loader, unseen)
            assert decoded.image.size == (400, 300)

    asyncio.run(main())


def test_when_one_image_of_a_request_fails_its_other_images_stop_waiting():
    whole = encode(chart(3, (1000, 1000)))
    truncated = whole[: len(whole) // 2]  # a valid header, pixel data cut short
    waiting = encode(chart(4, (1500, 1000)))  # does not fit beside the held million, even once the first is done

    async def main():
        async with ImageFetcher(timeout=1, max_redirects=0, max_bytes=LIMITS.max_bytes, allowlist=[]) as fetcher:
            budget = DecodeBudget(2_000_000, wait_s=10)
            loader = MediaLoader(fetcher, LIMITS, budget=budget)
            busy = Gate()
            holding = start(budget, 1_000_000, busy)
            await until(busy.started.is_set)
            with pytest.raises(ImageError) as info:  # the first fits beside the held million and fails
                await decode_with(loader, truncated, waiting)
            assert info.value.code == "truncated_image"
            await asyncio.sleep(0)
            assert budget.waiting == 0, "the request's second image no longer waits for a decode nobody needs"
            busy.open()
            await holding

    asyncio.run(main())
