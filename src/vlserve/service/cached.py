"""The response cache around generation: lookup → coalesce → compute → store, for deterministic requests.

A request whose answer its input determines (:func:`~vlserve.cache.keys.cacheable`) has its images fetched
first (their bytes are part of the key), then is answered from the store (``hit``: no admission, no
engine, nothing decoded), or from the answer of an identical request already being computed in this
process (``coalesced``), or computed (``miss``) and stored once complete and successful. ``Cache-Control:
no-cache`` skips the lookup and replaces the entry; ``no-store`` neither reads nor writes (``bypass``).
Other requests are computed as before: admitted first, then their images fetched.

Coalescing: the first request (the leader) computes; the others wait for its answer, holding nothing in
the engine, for as long as their own request lasts. A leader that is cancelled (its client went away)
hands the lead to one of them; a leader that fails lets each compute its own answer (and its own error).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlserve.cache import CacheStore, entry
from vlserve.cache.keys import SHARED, cache_key, cacheable, content_hash, directives
from vlserve.engine.base import Delta, EngineRequest, SamplingParams, ToolCallDelta, Usage
from vlserve.media import MediaRef
from vlserve.media.sources import EncodedImage
from vlserve.observability.accounting import note_cache, note_image, note_model, note_text
from vlserve.service.admission import release_ticket
from vlserve.service.generation import Completion, GenerationService, assemble_tool_calls, request_text
from vlserve.settings import Settings

HEADER = "x-vlserve-cache"
HASH_INLINE_BYTES = 1 << 20  # images smaller than this in all are hashed on the event loop
_CANCELLED = "cancelled"  # what a flight ends with when its leader was cancelled: another leads
_FAILED = "failed"  # … when its leader failed: each waiting request computes its own answer

Flight = asyncio.Future  # an identical request being computed: its deltas, or _CANCELLED / _FAILED


@dataclass(frozen=True)
class Ask:
    """One chat or text completion request, parsed: its images still references."""

    kind: str  # "chat" or "completion"
    request: EngineRequest  # no media yet: ``refs`` give them
    params: SamplingParams
    stream: bool
    refs: Sequence[MediaRef] = ()
    caller: str | None = None  # the API key's id; None: auth is off (one anonymous caller)
    cache_control: str | None = None  # the request's Cache-Control header
    max_request_pixels: int | None = None


@dataclass(frozen=True)
class Answer:
    """A stream of deltas (``stream``) or a whole completion, and how the cache served it (None: not cacheable)."""

    outcome: str | None
    deltas: AsyncIterator[Delta] | None = None
    completion: Completion | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.outcome is None else {HEADER: self.outcome}


def completion_of(deltas: Sequence[Delta]) -> Completion:
    """The whole answer ``deltas`` make up, as :meth:`GenerationService.complete` assembles it."""
    last = deltas[-1]
    token_ids = tuple(token for delta in deltas for token in delta.token_ids)
    return Completion(
        "".join(delta.text for delta in deltas), last.finish_reason or "stop", last.usage or Usage(0, len(token_ids)),
        token_ids, tuple(lp for delta in deltas for lp in delta.logprobs),
        assemble_tool_calls([piece for delta in deltas for piece in delta.tool_calls]),
        "".join(delta.reasoning for delta in deltas) or None,
    )  # fmt: skip


def delta_of(completion: Completion) -> Delta:
    """A whole answer as the one delta that :func:`completion_of` turns back into it."""
    calls = tuple(ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(completion.tool_calls))
    return Delta(completion.text, completion.finish_reason, completion.token_ids, completion.usage,  # type: ignore[arg-type]
                 completion.logprobs, calls, reasoning=completion.reasoning or "")  # fmt: skip


async def _replayed(deltas: Sequence[Delta]) -> AsyncIterator[Delta]:
    for delta in deltas:
        yield delta


async def _after(first: Delta, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    try:
        yield first
        async for delta in rest:
            yield delta
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


async def _hashes(images: Sequence[EncodedImage]) -> list[str]:
    """The SHA-256 of every image's bytes; in a worker thread when they are large (the event loop stays free)."""
    if sum(len(image.data) for image in images) < HASH_INLINE_BYTES:
        return [content_hash(image.data) for image in images]
    return await asyncio.to_thread(lambda: [content_hash(image.data) for image in images])


class CachedGeneration:
    """Answers chat and text completions through the response cache (``store`` None: the cache is off)."""

    def __init__(
        self,
        service: GenerationService,
        store: CacheStore | None,
        *,
        shared: bool = False,
        server: Mapping[str, Any] | None = None,  # settings that change answers (default max tokens …)
    ) -> None:
        self.service = service
        self._store = store
        self._shared = shared
        self._server = dict(server or {})
        self._flights: dict[str, Flight] = {}

    @classmethod
    def of(cls, settings: Settings, service: GenerationService, store: CacheStore | None) -> CachedGeneration:
        """The cache ``settings`` ask for around ``service``; the server settings that change answers join the key."""
        server = {
            "default_max_tokens": settings.default_max_tokens, "max_image_pixels": settings.max_image_pixels,
            "video_fps": settings.video_fps, "video_max_frames": settings.video_max_frames,
        }  # fmt: skip
        return cls(service, store, shared=settings.cache_scope == "shared", server=server)

    async def answer(self, ask: Ask) -> Answer:
        if self._store is None or not cacheable(ask.params):
            return await self._fresh(ask, None, None, None, None)
        read, write = directives(ask.cache_control)
        images = await self.service.fetch_media(ask.refs) if ask.refs else []
        key = self._key(ask, await _hashes(images))
        if not read:
            note_cache("bypass")
            return await self._fresh(ask, images, key if write else None, None, "bypass")
        while True:
            data = await self._store.get(key)
            deltas = self._decoded(data)
            if deltas is not None:
                return self._replay(ask, images, deltas, "hit")
            flight = self._flights.get(key)
            if flight is None:
                break
            release_ticket()  # it waits for the leader's answer, holding no place with the engine
            result = await asyncio.shield(flight)  # a waiter cancelled (its client gone) leaves the flight be
            if isinstance(result, tuple):
                return self._replay(ask, images, result, "coalesced")
            if result == _FAILED:
                note_cache("miss")
                return await self._fresh(ask, images, key, None, "miss")
            # _CANCELLED: look again; the first waiter to get here leads
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        note_cache("miss")
        return await self._fresh(ask, images, key, flight, "miss")

    def _key(self, ask: Ask, hashes: list[str]) -> str:
        info = self.service.engine.info
        server = {
            "model": info.id, "max_model_len": info.max_model_len, "min_pixels": info.min_pixels,
            "max_pixels": info.max_pixels, "max_request_pixels": ask.max_request_pixels, **self._server,
        }  # fmt: skip
        scope = SHARED if self._shared else ("anonymous" if ask.caller is None else f"key:{ask.caller}")
        return cache_key(kind=ask.kind, scope=scope, server=server, request=ask.request, image_hashes=hashes,
                         params=ask.params, stream=ask.stream)  # fmt: skip

    @staticmethod
    def _decoded(data: bytes | None) -> tuple[Delta, ...] | None:
        if data is None:
            return None
        try:
            return entry.decode(data)
        except ValueError:  # another version's entry, or damaged: a miss, replaced by the fresh answer
            return None

    def _replay(self, ask: Ask, images: Sequence[EncodedImage], deltas: tuple[Delta, ...], outcome: str) -> Answer:
        release_ticket()  # answered without the engine: the place held for it is free for others
        note_cache(outcome)
        note_model(self.service.engine.info.id)
        for image in images:  # the audit record names what was sent, answered from the cache or not
            note_image(image.data)
        note_text(request_text(ask.request))
        if ask.stream:
            return Answer(outcome, deltas=_replayed(deltas))
        return Answer(outcome, completion=completion_of(deltas))

    async def _generate(self, ask: Ask, images: Sequence[EncodedImage] | None) -> AsyncIterator[Delta] | Completion:
        """Admitted, images decoded (fetched first when ``images`` is None), prompt built, then generated."""
        service = self.service
        with service.admit() as slot:  # before any image is decoded or the prompt built
            if images is None:
                media = await service.load_media(ask.refs, max_request_pixels=ask.max_request_pixels)
            else:
                media = await service.decode_images(images, max_request_pixels=ask.max_request_pixels)
            prepared = await service.prepare(dataclasses.replace(ask.request, media=media))
            if ask.stream:
                return await service.stream(prepared, ask.params, slot)
            return await service.complete(prepared, ask.params)

    async def _fresh(
        self, ask: Ask, images: Sequence[EncodedImage] | None, key: str | None, flight: Flight | None,
        outcome: str | None,
    ) -> Answer:  # fmt: skip
        """Computed; stored under ``key`` (None: not stored) once complete, ``flight`` ended either way."""
        try:
            result = await self._generate(ask, images)
        except asyncio.CancelledError:
            self._land(key, flight, _CANCELLED)
            raise
        except BaseException:
            self._land(key, flight, _FAILED)
            raise
        if isinstance(result, Completion):
            if key is not None:
                await self._keep(key, flight, (delta_of(result),))
            return Answer(outcome, completion=result)
        if key is None:
            return Answer(outcome, deltas=result)
        recorder = self._recorded(result, key, flight)
        first = await anext(recorder)  # started: closing or collecting it now always ends the flight
        return Answer(outcome, deltas=_after(first, recorder))

    async def _recorded(self, deltas: AsyncIterator[Delta], key: str, flight: Flight | None) -> AsyncIterator[Delta]:
        """``deltas`` as they come; stored once the last (with its finish reason) has been taken by the client."""
        seen: list[Delta] = []
        result: tuple[Delta, ...] | str = _CANCELLED
        try:
            async for delta in deltas:
                seen.append(delta)
                yield delta
                if delta.finish_reason is not None:
                    result = tuple(seen)
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except BaseException:
            result = _FAILED  # an error (a broken format, a lost upstream) is never stored
            raise
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]
            if isinstance(result, tuple):
                await self._keep(key, flight, result)
            else:
                self._land(key, flight, result)

    def _land(self, key: str | None, flight: Flight | None, result: tuple[Delta, ...] | str) -> None:
        """End ``flight`` with ``result``, waking every request that waits on it."""
        if flight is None or key is None:
            return
        if not flight.done():
            flight.set_result(result)
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _keep(self, key: str, flight: Flight | None, deltas: tuple[Delta, ...]) -> None:
        """Hand ``deltas`` to the waiters, then store them (the flight stays findable until they are stored)."""
        if flight is not None and not flight.done():
            flight.set_result(deltas)
        try:
            assert self._store is not None
            await self._store.set(key, entry.encode(deltas))
        finally:
            self._land(key, flight, deltas)
