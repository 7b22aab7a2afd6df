"""Admission: a request takes a place with the engine before any work, and holds it until its answer ends."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tests.api.fakes import FakeEngine
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.errors import ClientError, RateLimitError
from vlserve.media import ImageFetcher, ImageLimits, MediaLoader
from vlserve.service import GenerationService
from vlserve.service.admission import Admission, current_ticket

REQUEST = EngineRequest((ChatTurn.user("tell me about the sea"),))


def run(test) -> None:
    async def main() -> None:
        engine = FakeEngine()
        engine.max_inflight = 1
        await engine.start()
        async with ImageFetcher(timeout=1, max_redirects=0, max_bytes=1024, allowlist=[]) as fetcher:
            await test(GenerationService(engine, MediaLoader(fetcher, ImageLimits(1024, 10**6)), max_images=8))

    asyncio.run(main())


def test_a_request_over_capacity_is_refused_with_retry_after_and_the_place_comes_back():
    async def test(service: GenerationService) -> None:
        with service.admit():
            with pytest.raises(RateLimitError) as refused:
                service.admit()
            assert refused.value.status_code == 429 and refused.value.code == "queue_full"
            assert refused.value.headers["Retry-After"] == "1"
        with service.admit():  # given back when the block ended
            assert service.admission.in_use == 1
        assert service.admission.in_use == 0

    run(test)


def test_a_stream_holds_its_place_until_it_ends():
    async def test(service: GenerationService) -> None:
        with service.admit() as slot:
            prepared = await service.prepare(REQUEST)
            deltas = await service.stream(prepared, SamplingParams(max_tokens=5), slot)
        assert service.admission.in_use == 1  # the request's block ended; its stream has not
        with pytest.raises(RateLimitError):
            service.admit()
        text = "".join([d.text async for d in deltas])
        assert text.startswith("images: said:")
        assert service.admission.in_use == 0

    run(test)


def test_a_stream_closed_early_or_dropped_unread_gives_its_place_back():
    async def test(service: GenerationService) -> None:
        with service.admit() as slot:
            deltas = await service.stream(await service.prepare(REQUEST), SamplingParams(max_tokens=5), slot)
        await anext(deltas)
        await deltas.aclose()  # a client that went away mid-stream
        assert service.admission.in_use == 0

        with service.admit() as slot:
            deltas = await service.stream(await service.prepare(REQUEST), SamplingParams(max_tokens=5), slot)
        del deltas  # a response that never started streaming (the client left before the first byte)
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)
        assert service.admission.in_use == 0

    run(test)


def test_a_request_that_fails_before_its_stream_gives_its_place_back():
    async def test(service: GenerationService) -> None:
        with pytest.raises(ClientError), service.admit() as slot:
            prepared = await service.prepare(REQUEST)
            await service.stream(prepared, SamplingParams(max_tokens=10_000, logprobs=True), slot)
        assert service.admission.in_use == 0
        with pytest.raises(asyncio.CancelledError), service.admit():
            raise asyncio.CancelledError  # a client that disconnected while its images were loading
        assert service.admission.in_use == 0

    run(test)


def test_a_place_held_at_the_edge_counts_becomes_the_requests_slot_and_is_given_back_once():
    admission = Admission(lambda: 2)
    ticket = admission.hold()
    other = admission.hold()
    with pytest.raises(RateLimitError):  # both places held: a third request is refused at the edge
        admission.hold()
    with pytest.raises(RateLimitError):  # and so is work without a ticket (a document page)
        admission.admit()
    token = current_ticket.set(ticket)
    try:
        slot = admission.admit()  # the held place becomes the slot: no second place taken
    finally:
        current_ticket.reset(token)
    assert (admission.in_use, admission.held) == (1, 1)
    ticket.release()  # the request ended: the slot is its place now, nothing more to give back
    other.release()
    other.release()
    assert (admission.in_use, admission.held) == (1, 0)
    slot.release()
    assert (admission.in_use, admission.held) == (0, 0)
