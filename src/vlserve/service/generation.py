"""Generation: admission → media → engine request → checked → completed or streamed, answers validated.

A request first takes a place with the engine (:meth:`GenerationService.admit`), or is refused with a
429 before anything is fetched, decoded or tokenised. Everything that can be wrong with a request is
found before the first byte is sent: ``stream`` checks the request with the engine and waits for the
engine's first delta before it returns, so a full queue, an upstream's refusal or a prompt that does
not fit is an error status, not an error inside a stream that already answered 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from vlserve.engine.base import (
    Delta,
    Engine,
    EngineRequest,
    MediaItem,
    Prepared,
    SamplingParams,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from vlserve.errors import ModelOutputError, NotFoundError, ServerError
from vlserve.media import MediaLoader, MediaRef
from vlserve.media.images import LoadedImage
from vlserve.media.resize import DEFAULT_MAX_PIXELS
from vlserve.media.sources import EncodedImage
from vlserve.media.video import LoadedVideo
from vlserve.observability.accounting import (
    note_image,
    note_model,
    note_queue_wait,
    note_text,
    note_timing,
    note_usage,
)
from vlserve.observability.stall import StallWatch
from vlserve.security.token_budget import reserve_generation
from vlserve.service.admission import Admission, Slot
from vlserve.structured import OutputFormat, validate_output


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    usage: Usage
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None  # a reasoning model's thinking, apart from the answer; None: it gave none


def assemble_tool_calls(pieces: Sequence[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """Whole tool calls from their streamed pieces (id and name first, then arguments), in index order."""
    calls: dict[int, list[str]] = {}
    for piece in pieces:
        call = calls.setdefault(piece.index, [piece.id or "", piece.name or "", ""])
        call[0], call[1] = call[0] or piece.id or "", call[1] or piece.name or ""
        call[2] += piece.arguments
    return tuple(ToolCall(*calls[index]) for index in sorted(calls))


def answer_error(text: str, finish_reason: str, output: OutputFormat | None) -> ModelOutputError | None:
    """The error for a finished answer that breaks the requested format (a cut-off one is the client's call)."""
    if output is None or finish_reason != "stop":
        return None
    problem = validate_output(text, output)
    if problem is None:
        return None
    param = "response_format" if output.param.startswith("response_format") else output.param
    return ModelOutputError(f"{problem}; the grammar cannot enforce every schema keyword", param=param)


def media_item(loaded: LoadedImage | LoadedVideo) -> MediaItem:
    """The engine's view of a decoded image, or of a video's sampled frames (its first frame as ``image``)."""
    if isinstance(loaded, LoadedImage):
        return MediaItem.decoded(loaded)
    return MediaItem(
        loaded.frames[0], kind="video", source=loaded.source, source_type=loaded.source_type, frames=loaded.frames,
        timestamps=loaded.timestamps, fps=loaded.fps,
    )  # fmt: skip


def request_text(request: EngineRequest) -> str:
    """The text a client sent in ``request`` (its prompt, or every text part of every turn)."""
    if request.prompt is not None:
        return request.prompt
    return "\n".join(p["text"] for turn in request.turns for p in turn.parts if p.get("type") == "text")


class GenerationService:
    def __init__(
        self,
        engine: Engine,
        media: MediaLoader,
        *,
        max_images: int,
        stall_timeout_s: float = 0.0,
        default_max_tokens: int | None = None,  # the engine's completion limit when a request sets none
    ) -> None:
        self.engine = engine
        self.default_max_tokens = default_max_tokens
        self.stalls = StallWatch(stall_timeout_s)  # times every wait for the engine's next delta
        self._media = media
        self.max_images = max_images  # per request, the server's limit
        self.admission = Admission(lambda: engine.capacity)

    def admit(self) -> Slot:
        """A place with the engine for one request (429 queue_full when none is free): take it before any
        work for the request, in a ``with`` block; a stream given the slot holds it until it ends."""
        return self.admission.admit()

    def check_model(self, name: str | None) -> str:
        served = self.engine.info.id
        if name is not None and name != served:
            raise NotFoundError(
                f"the model {name!r} does not exist; this server serves {served!r}",
                param="model",
                code="model_not_found",
            )
        return served

    async def load_media(
        self, refs: Sequence[MediaRef], *, max_request_pixels: int | None = None
    ) -> tuple[MediaItem, ...]:
        """The images ``refs`` point at, fetched, checked from their headers (each image's limits and
        ``max_request_pixels`` for all of them), then decoded straight to the model's pixel budget."""
        return await self.decode_images(await self._media.fetch(refs), max_request_pixels=max_request_pixels)

    async def fetch_media(self, refs: Sequence[MediaRef]) -> list[EncodedImage]:
        """The bytes ``refs`` point at, none decoded (the response cache keys on them; then ``decode_images``)."""
        return await self._media.fetch(refs)

    async def decode_images(
        self, images: Sequence[EncodedImage], *, max_request_pixels: int | None = None
    ) -> tuple[MediaItem, ...]:
        """Images a client sent as bytes (uploads, or fetched), checked and decoded like :meth:`load_media`."""
        for image in images:
            note_image(image.data)
        target = self.engine.info.max_pixels or DEFAULT_MAX_PIXELS
        loaded = await self._media.decode(images, max_request_pixels=max_request_pixels, target_pixels=target)
        return tuple(media_item(item) for item in loaded)

    async def prepare(self, request: EngineRequest) -> Prepared:
        note_text(request_text(request))
        return await self.engine.prepare(request)

    async def stream(
        self, prepared: Prepared, params: SamplingParams, slot: Slot | None = None
    ) -> AsyncIterator[Delta]:
        """Deltas of the answer, the last with finish reason and usage; closing it cancels generation.

        Raises before returning when the engine refuses the request. The iterator raises
        ModelOutputError, after the text, when a finished answer breaks the requested format. Given the
        request's admission ``slot``, the stream holds it until it ends (or is closed, or collected).
        Under a key's tokens per day, its worst case is reserved first (QuotaExceededError when the budget is
        spent or reserved), and settled with the tokens really used when the stream ends.
        """
        held = await reserve_generation(
            prepared, params, default_max_tokens=self.default_max_tokens, max_model_len=self.engine.info.max_model_len
        )
        try:
            await self.engine.check(prepared, params)
        except BaseException:
            if held is not None:
                await held.settle()
            raise
        submitted = time.perf_counter()
        deltas = self.stalls.watch(self.engine.generate(prepared, params))
        if held is not None:  # the innermost wrapper: settled after the usage of the last delta is noted
            deltas = held.during(deltas)
        if slot is not None:  # started below, so that closing it (or its collection) releases the slot
            deltas = slot.hold_during(deltas)
        try:
            first = await anext(deltas)
        except StopAsyncIteration:
            raise ServerError("generation ended without a result") from None
        except BaseException:
            await deltas.aclose()
            raise
        if first.queued_s is not None:
            note_queue_wait(first.queued_s)
        # Token timings only mean something when the engine streams (a whole answer comes as one delta).
        started = (submitted, time.perf_counter()) if params.incremental else None
        return self._validated(first, deltas, params.output, started)

    async def _validated(
        self,
        first: Delta,
        deltas: AsyncIterator[Delta],
        output: OutputFormat | None,
        started: tuple[float, float] | None = None,  # when it was submitted, when the first delta came
    ) -> AsyncIterator[Delta]:
        text: list[str] = []
        delta = first
        try:
            while True:
                text.append(delta.text)
                if delta.finish_reason is not None:
                    note_model(self.engine.info.id)
                    if delta.usage is not None:
                        note_usage(delta.usage)
                    if started is not None:
                        note_timing(started[1] - started[0], time.perf_counter() - started[1])
                    error = None
                    if output is not None:  # validation is CPU work as long as the answer and schema: off the loop
                        error = await asyncio.to_thread(answer_error, "".join(text), delta.finish_reason, output)
                    if error is not None:  # the text so far, then the error instead of a finish
                        if delta.text:
                            yield dataclasses.replace(delta, finish_reason=None, usage=None)
                        raise error
                    yield delta
                    return
                yield delta
                try:
                    delta = await anext(deltas)
                except StopAsyncIteration:
                    raise ServerError("generation ended without a result") from None
        finally:
            await deltas.aclose()

    async def complete(self, prepared: Prepared, params: SamplingParams) -> Completion:
        pieces: list[str] = []
        thinking: list[str] = []
        token_ids: list[int] = []
        logprobs: list[TokenLogprob] = []
        calls: list[ToolCallDelta] = []
        whole = dataclasses.replace(params, incremental=False)  # nobody reads the answer before it ends
        async with contextlib.aclosing(await self.stream(prepared, whole)) as deltas:
            async for delta in deltas:
                pieces.append(delta.text)
                thinking.append(delta.reasoning)
                token_ids.extend(delta.token_ids)
                logprobs.extend(delta.logprobs)
                calls.extend(delta.tool_calls)
                if delta.finish_reason is not None:
                    usage = delta.usage or Usage(0, len(token_ids))
                    return Completion(
                        "".join(pieces), delta.finish_reason, usage, tuple(token_ids), tuple(logprobs),
                        assemble_tool_calls(calls), "".join(thinking) or None,
                    )  # fmt: skip
        raise ServerError("generation ended without a result")
