"""A fake engine behind the Engine protocol, and request builders, for the service tier (no torch needed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from vlserve.engine.base import (
    Delta,
    EngineRequest,
    EngineStatus,
    ModelInfo,
    Prepared,
    SamplingParams,
    Usage,
)
from vlserve.engine.budget import completion_budget
from vlserve.engine.capabilities import refuse_unsupported
from vlserve.structured import OutputFormat


@dataclass
class FakePrompt(Prepared):
    words: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return len(self.words) + self.image_tokens


class FakeEngine:
    """One token per word and 10 per image; answers by describing what it was given."""

    def __init__(self, max_model_len: int = 200, ready: bool = True) -> None:
        self._info = ModelInfo("fake-vl", max_model_len, 8, "FakeForTests", 0)
        self._start_ready = ready
        self._ready = False
        self.cancelled = 0
        self.max_inflight = 64  # the admission capacity it reports
        self.outputs: list[OutputFormat] = []  # every output format the service asked to enforce

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def capacity(self) -> int:
        return self.max_inflight

    def status(self) -> EngineStatus:
        return EngineStatus(detail=None if self._ready else "loading the model")

    async def start(self) -> None:
        self._ready = self._start_ready

    async def close(self) -> None:
        self._ready = False

    async def prepare(self, request: EngineRequest) -> FakePrompt:
        words = [w for t in request.turns for p in t.parts if p["type"] == "text" for w in p["text"].split()]
        if request.prompt is not None:  # a text completion: the raw prompt's words
            words = request.prompt.split()
        sizes = [  # a video as its frame count and frame size: "video:6x320x256"
            f"{item.image.width}x{item.image.height}" if item.kind == "image"
            else f"video:{len(item.frames)}x{item.image.width}x{item.image.height}"
            for item in request.media
        ]  # fmt: skip
        return FakePrompt(request, 10 * len(sizes), words, sizes)

    def _budget(self, prompt: FakePrompt, params: SamplingParams) -> int:
        return completion_budget(
            prompt.num_tokens, params.max_tokens, max_model_len=self._info.max_model_len, default=16
        )

    async def check(self, prepared: Prepared, params: SamplingParams) -> None:
        assert isinstance(prepared, FakePrompt)
        refuse_unsupported(prepared.request, params, supported=frozenset(), engine="fake")
        self._budget(prepared, params)
        if params.output is not None:
            await self.check_output(params.output)

    async def check_output(self, output: OutputFormat) -> None:
        self.outputs.append(output)

    async def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        assert isinstance(prepared, FakePrompt)
        limit = self._budget(prepared, params)
        answer = ["images:", *prepared.sizes, "said:", *prepared.words]
        if params.output is not None:  # a JSON object whose keys are the words, one token each
            answer = json.dumps({w: len(w) for w in prepared.words}).split(" ")
        text = ""
        for n, word in enumerate(answer[:limit], start=1):
            piece = (" " if text else "") + word
            if any(s in text + piece for s in params.stop):
                yield Delta("", "stop", (n,), self._usage(prepared, n))
                return
            text += piece
            last = n == min(len(answer), limit)
            reason = None if not last else ("stop" if len(answer) <= limit else "length")
            yield Delta(piece, reason, (n,), self._usage(prepared, n) if last else None)  # type: ignore[arg-type]
            await asyncio.sleep(0)

    @staticmethod
    def _usage(prompt: FakePrompt, generated: int) -> Usage:
        return Usage(prompt.num_tokens, generated, prompt.image_tokens)


def image_message(*urls: str, text: str = "what is this") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]
