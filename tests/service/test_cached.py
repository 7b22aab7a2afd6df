"""The response cache around generation: coalescing identical requests, and what is never stored."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.cache.fakes import CountingEngine
from vlserve.cache.memory import MemoryStore
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.errors import ModelOutputError, ServerError
from vlserve.media import ImageFetcher, ImageLimits, MediaLoader
from vlserve.service import GenerationService
from vlserve.service.cached import Answer, Ask, CachedGeneration
from vlserve.structured import OutputFormat

GREEDY = SamplingParams(temperature=0.0, max_tokens=6)


def ask(text: str = "tell me about the sea", *, stream: bool = False, params: SamplingParams = GREEDY) -> Ask:
    return Ask("chat", EngineRequest((ChatTurn.user(text),)), params, stream)


def run(test, *, delay_s: float = 0.0) -> None:
    async def main() -> None:
        engine = CountingEngine(delay_s=delay_s)
        await engine.start()
        store = MemoryStore(max_entries=100, max_bytes=10**6, ttl_s=60)
        async with ImageFetcher(timeout=1, max_redirects=0, max_bytes=1024, allowlist=[]) as fetcher:
            service = GenerationService(engine, MediaLoader(fetcher, ImageLimits(1024, 10**6)), max_images=8)
            await test(CachedGeneration(service, store), engine, store)

    asyncio.run(main())


async def text_of(answer: Answer) -> str:
    if answer.completion is not None:
        return answer.completion.text
    assert answer.deltas is not None
    return "".join([delta.text async for delta in answer.deltas])


def test_identical_requests_in_flight_are_computed_once() -> None:
    async def test(cache: CachedGeneration, engine: CountingEngine, store: MemoryStore) -> None:
        answers = await asyncio.gather(*(cache.answer(ask()) for _ in range(8)))
        assert engine.calls == 1
        assert sorted(a.outcome for a in answers) == ["coalesced"] * 7 + ["miss"]
        assert len({a.completion for a in answers}) == 1
        assert cache.service.admission.in_use == 0 and store.entries == 1

    run(test, delay_s=0.01)


def test_a_cancelled_leader_hands_the_lead_to_a_waiting_request() -> None:
    async def test(cache: CachedGeneration, engine: CountingEngine, store: MemoryStore) -> None:
        leader = asyncio.create_task(cache.answer(ask()))
        await asyncio.sleep(0.02)  # generating
        followers = [asyncio.create_task(cache.answer(ask())) for _ in range(4)]
        await asyncio.sleep(0.01)  # all waiting for the leader
        leader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leader
        answers = await asyncio.wait_for(asyncio.gather(*followers), 10)
        assert engine.calls == 2  # the cancelled leader's, and one follower's
        assert sorted(a.outcome for a in answers) == ["coalesced"] * 3 + ["miss"]
        assert {a.completion.text for a in answers} == {"images: said: tell me about the"}  # type: ignore[union-attr]

    run(test, delay_s=0.01)


def test_a_failed_leader_lets_each_waiting_request_compute_its_own_answer() -> None:
    async def test(cache: CachedGeneration, engine: CountingEngine, store: MemoryStore) -> None:
        engine.fail_next = 1
        leader = asyncio.create_task(cache.answer(ask()))
        await asyncio.sleep(0)
        followers = [asyncio.create_task(cache.answer(ask())) for _ in range(3)]
        with pytest.raises(ServerError):
            await leader
        answers = await asyncio.wait_for(asyncio.gather(*followers), 10)
        assert [a.outcome for a in answers] == ["miss"] * 3 and engine.calls == 4
        assert (await cache.answer(ask())).outcome == "hit"

    run(test, delay_s=0.01)


def test_a_stream_is_stored_only_once_its_client_has_taken_the_last_delta() -> None:
    async def test(cache: CachedGeneration, engine: CountingEngine, store: MemoryStore) -> None:
        first = await cache.answer(ask(stream=True))
        assert first.outcome == "miss" and first.deltas is not None
        await anext(first.deltas)
        await first.deltas.aclose()  # the client went away
        assert store.entries == 0
        waiting = await cache.answer(ask(stream=True))  # no flight left behind: computed again
        assert waiting.outcome == "miss" and engine.calls == 2
        whole = await text_of(waiting)
        replay = await cache.answer(ask(stream=True))
        assert replay.outcome == "hit" and await text_of(replay) == whole and engine.calls == 2

    run(test)


def test_a_stream_that_is_never_read_still_ends_its_flight() -> None:
    async def test(cache: CachedGeneration, engine: CountingEngine, store: MemoryStore) -> None:
        unread = await cache.answer(ask(stream=True))
        follower = asyncio.create_task(cache.answer(ask(stream=True)))
        await asyncio.sleep(0)
        del unread  # dropped without being iterated: collected, its generation closed
        answer = await asyncio.wait_for(follower, 10)
        assert answer.outcome == "miss" and await text_of(answer)

    run(test)


def test_answers_that_break_their_format_are_never_stored() -> None:
    async def test(cache: CachedGeneration, engine: CountingEngine, store: MemoryStore) -> None:
        # The fake answers {"word": length} objects; a schema requiring another key fails validation.
        schema = {"type": "object", "required": ["missing"]}
        params = SamplingParams(temperature=0.0, max_tokens=20, output=OutputFormat.of("x", schema))
        for _ in range(2):
            with pytest.raises(ModelOutputError):
                await cache.answer(ask("two words", params=params))
        assert engine.calls == 2 and store.entries == 0

    run(test)


def test_sampled_requests_without_a_seed_are_never_cached() -> None:
    async def test(cache: CachedGeneration, engine: CountingEngine, store: MemoryStore) -> None:
        sampled = SamplingParams(temperature=0.8, max_tokens=4)
        answers = [await cache.answer(ask(params=sampled)) for _ in range(2)]
        assert [a.outcome for a in answers] == [None, None] and engine.calls == 2 and store.entries == 0
        seeded = SamplingParams(temperature=0.8, seed=3, max_tokens=4)
        answers = [await cache.answer(ask(params=seeded)) for _ in range(2)]
        assert [a.outcome for a in answers] == ["miss", "hit"] and engine.calls == 3

    run(test)
