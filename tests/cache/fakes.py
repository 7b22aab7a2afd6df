"""A fake engine that counts its generations, optionally slowly (to overlap requests) or failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tests.api.fakes import FakeEngine
from vlserve.engine.base import Delta, Prepared, SamplingParams
from vlserve.errors import ServerError


class CountingEngine(FakeEngine):
    def __init__(self, *, delay_s: float = 0.0) -> None:
        super().__init__()
        self.calls = 0  # generations started
        self.delay_s = delay_s  # between two tokens
        self.fail_next = 0  # the next this many generations fail after their first token

    async def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        self.calls += 1
        failing = self.fail_next > 0
        self.fail_next -= failing
        first = True
        async for delta in super().generate(prepared, params):
            if not first:
                await asyncio.sleep(self.delay_s)
                if failing:
                    raise ServerError("the engine failed")
            first = False
            yield delta
