"""One long-running asyncio task owned by an object: started once, cancelled and awaited on stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class Background:
    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[Any] | None = None

    def start(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``work()`` in a task on the running loop, unless it already runs."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(work(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
