"""A TransformersEngine on the demo checkpoint kept running across a module's tests, plus a reference.

The engine lives on a private event loop, driven only inside ``run_until_complete``, so one start
serves many tests. :func:`forward_logits` is the plain single-row model: one full forward pass, no
batch, no cache, no processors, the yardstick engine answers are compared with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import torch

from vlserve.engine.base import ChatTurn, Delta, EngineRequest, SamplingParams
from vlserve.engine.transformers import TransformersEngine
from vlserve.engine.transformers.prompting import Prompt
from vlserve.settings import Settings


class RunningEngine:
    def __init__(self, model: Path, **settings: object) -> None:
        self._loop = asyncio.new_event_loop()
        self.engine = TransformersEngine(Settings(model=model, warmup=False, **settings))
        self._loop.run_until_complete(self.engine.start())

    def prompt(self, text: str) -> Prompt:
        return self._loop.run_until_complete(self.engine.prepare(EngineRequest.chat([ChatTurn.user(text)])))

    def answers(self, requests: Sequence[tuple[Prompt, SamplingParams]]) -> list[list[Delta]]:
        """Every request sent at once (so they share batches), each one's deltas."""

        async def one(prompt: Prompt, params: SamplingParams) -> list[Delta]:
            return [d async for d in self.engine.generate(prompt, params)]

        async def all_at_once() -> list[list[Delta]]:
            return await asyncio.gather(*(one(p, s) for p, s in requests))

        return self._loop.run_until_complete(all_at_once())

    def answer(self, prompt: Prompt, params: SamplingParams) -> list[Delta]:
        return self.answers([(prompt, params)])[0]

    def close(self) -> None:
        self._loop.run_until_complete(self.engine.close())
        self._loop.close()


def token_ids(deltas: Sequence[Delta]) -> list[int]:
    return [t for d in deltas for t in d.token_ids]


def forward_logits(model: torch.nn.Module, prompt: Prompt, generated: Sequence[int]) -> torch.Tensor:
    """Next-token logits (float32) after a text-only prompt and ``generated``, one position per token.

    Row ``i`` is the distribution the ``i``-th generated token was drawn from.
    """
    ids = torch.tensor([[*prompt.input_ids, *generated]])
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=torch.zeros_like(ids))
    start = prompt.num_tokens - 1
    return out.logits[0, start : start + len(generated) + 1].float()
