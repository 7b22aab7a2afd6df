"""One page through the model: prompt, answer, check, and a rising temperature ladder on failure.

A page fails an attempt when its answer is cut off by the token limit, is not valid JSON, or breaks the
schema; the next attempt samples at the next temperature (olmOCR's recipe). After the last one the page
is failed with the reason, and the job goes on. Errors no retry can fix (the page does not fit the
context) fail the page at once. A page is admitted like any request (one place with the engine for all
its attempts); when none is free, the RateLimitError tells the worker to put the page back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.errors import ClientError, ModelOutputError, RateLimitError
from vlserve.jsonlimits import loads
from vlserve.service import GenerationService
from vlserve.store.jobs import PageOutcome
from vlserve.structured import OutputFormat

MARKDOWN_PROMPT = (
    "Transcribe this page into Markdown, in reading order. Write every table as an HTML <table>, and turn "
    "every chart into an HTML table of the values it shows. Output only the transcription."
)
JSON_PROMPT = "Extract the information on this page as one JSON object that follows this JSON Schema:\n{schema}"


def page_prompt(prompt: str | None, output: OutputFormat | None) -> str:
    """The user's prompt, else the default for the mode (Markdown, or JSON under the schema)."""
    if prompt:
        return prompt
    return MARKDOWN_PROMPT if output is None else JSON_PROMPT.format(schema=output.schema_json)


@dataclass(frozen=True)
class PageTask:
    image: Image.Image
    prompt: str
    output: OutputFormat | None
    temperatures: Sequence[float]
    max_tokens: int
    seed: int  # attempt k samples with seed + k: a rerun of a job repeats its answers


async def read_page(
    generation: GenerationService, task: PageTask, *, wanted: Callable[[], Awaitable[bool]] | None = None
) -> PageOutcome | None:
    """The page's outcome, or None when ``wanted`` says between attempts that nobody needs it any more."""
    with generation.admit():  # a page takes a place with the engine like any request; 429: the worker puts it back
        return await _attempts(generation, task, wanted)


async def _attempts(
    generation: GenerationService, task: PageTask, wanted: Callable[[], Awaitable[bool]] | None
) -> PageOutcome | None:
    started = time.monotonic()
    # background: chat requests go first (the transformers engine keeps them a share of its batch)
    prompt = await generation.prepare(
        EngineRequest.chat([ChatTurn.user(task.prompt, 1)], [task.image], background=True)
    )
    tried: list[dict] = []
    for attempt, temperature in enumerate(task.temperatures, start=1):
        if attempt > 1 and wanted is not None and not await wanted():
            return None
        params = SamplingParams(
            max_tokens=task.max_tokens, temperature=temperature, seed=task.seed + attempt, output=task.output
        )
        t0 = time.monotonic()
        record = {"attempt": attempt, "temperature": temperature}
        tried.append(record)
        try:
            completion = await generation.complete(prompt, params)
        except ModelOutputError as exc:
            record.update(ms=_ms(t0), error=exc.message)
            continue
        except RateLimitError:  # the engine is busy, the page is fine: the worker puts it back
            raise
        except ClientError as exc:  # the same request would fail again at any temperature
            record.update(ms=_ms(t0), error=exc.message)
            return _failed(exc.message, tried, started)
        record.update(ms=_ms(t0), finish_reason=completion.finish_reason, tokens=completion.usage.completion_tokens)
        if completion.finish_reason == "length":
            record["error"] = f"the answer was cut off at the token limit ({completion.usage.completion_tokens} tokens)"
            continue
        detail = {"total_ms": _ms(started), "attempts": tried}
        if task.output is None:
            return PageOutcome("succeeded", attempt, text=completion.text, detail=detail)
        return PageOutcome("succeeded", attempt, data=loads(completion.text, task.output.max_depth), detail=detail)
    return _failed(tried[-1]["error"], tried, started)


def _failed(reason: str, tried: list[dict], started: float) -> PageOutcome:
    return PageOutcome("failed", len(tried), error=reason, detail={"total_ms": _ms(started), "attempts": tried})


def _ms(since: float) -> int:
    return round((time.monotonic() - since) * 1000)
