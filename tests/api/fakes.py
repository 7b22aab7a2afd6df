"""A fake engine behind the Engine protocol, and request builders, for the service tier."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

from PIL import Image

from vlserve.engine.base import ChatTurn, Delta, ModelInfo, Prompt, SamplingParams
from vlserve.engine.transformers_engine import completion_budget
from vlserve.structured import OutputFormat


class FakeEngine:
    """One token per word and 10 per image; answers by describing what it was given."""

    def __init__(self, max_model_len: int = 200, ready: bool = True) -> None:
        self._info = ModelInfo("fake-vl", max_model_len, 8, "FakeForTests", 0)
        self._start_ready = ready
        self._ready = False
        self.cancelled = 0
        self.outputs: list[OutputFormat] = []  # every output format the service asked to enforce

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        self._ready = self._start_ready

    async def close(self) -> None:
        self._ready = False

    async def prepare(self, turns: Sequence[ChatTurn], images: Sequence[Image.Image]) -> Prompt:
        words = [w for t in turns for p in t.parts if p["type"] == "text" for w in p["text"].split()]
        sizes = [f"{im.width}x{im.height}" for im in images]
        ids = list(range(len(words) + 10 * len(images)))
        return Prompt(ids, [0] * len(ids), {"sizes": sizes, "words": words}, num_images=len(images))

    def check_budget(self, prompt: Prompt, params: SamplingParams) -> int:
        return completion_budget(
            prompt.num_tokens, params.max_tokens, max_model_len=self._info.max_model_len, default=16
        )

    async def check_output(self, output: OutputFormat) -> None:
        self.outputs.append(output)

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        limit = self.check_budget(prompt, params)
        answer = ["images:", *prompt.image_inputs["sizes"], "said:", *prompt.image_inputs["words"]]
        if params.output is not None:  # a JSON object whose keys are the words, one token each
            answer = json.dumps({w: len(w) for w in prompt.image_inputs["words"]}).split(" ")
        text = ""
        for n, word in enumerate(answer[:limit], start=1):
            piece = (" " if text else "") + word
            if any(s in text + piece for s in params.stop):
                yield Delta("", "stop", n)
                return
            text += piece
            last = n == min(len(answer), limit)
            reason = None if not last else ("stop" if len(answer) <= limit else "length")
            yield Delta(piece, reason, n)  # type: ignore[arg-type]
            await asyncio.sleep(0)


def image_message(*urls: str, text: str = "what is this") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]
