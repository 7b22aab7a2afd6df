"""Document pages are background work: their engine requests say so, so chat requests go first."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

from PIL import Image

from vlserve.documents.pipeline import PageTask, read_page


class RecordingGeneration:
    """Just enough of GenerationService for one page: records what it is asked to prepare."""

    def __init__(self) -> None:
        self.requests = []

    def admit(self):
        return contextlib.nullcontext()

    async def prepare(self, request):
        self.requests.append(request)
        return request

    async def complete(self, prompt, params):
        usage = SimpleNamespace(completion_tokens=2)
        return SimpleNamespace(finish_reason="stop", text="# page", usage=usage)


def test_page_requests_are_marked_background():
    generation = RecordingGeneration()
    task = PageTask(Image.new("RGB", (32, 32)), "Transcribe.", None, (0.0,), 16, 0)
    outcome = asyncio.run(read_page(generation, task))  # type: ignore[arg-type]
    assert outcome is not None and outcome.status == "succeeded"
    assert [r.background for r in generation.requests] == [True]
