"""One streamed chat completion, timed from the client's side.

Definitions (guidellm's, so that the two agree on the same load):

- **TTFT**: from just before the request is sent to the first SSE chunk carrying generated text
  (``delta.content``, or ``delta.reasoning_content`` / ``delta.reasoning`` for a thinking model).
- **ITL** (inter-token latency), one value per request: (last text chunk − first text chunk) /
  (output tokens − 1). A server that sends several tokens per chunk is measured per token all the same.
- **End-to-end latency**: from the same start to the end of the stream (``[DONE]`` or the body's end).
- **Output and prompt tokens**: ``usage.completion_tokens`` and ``usage.prompt_tokens`` of the last chunk
  (``stream_options.include_usage``); image tokens from ``usage.prompt_tokens_details.image_tokens`` when the
  server reports them. Without usage, the text chunks are counted instead (``usage_reported`` is then false).
- **Errors**: keyed ``"STATUS CODE"`` from the OpenAI error envelope (``"429 rate_limit_exceeded"``), or
  ``"timeout"`` / ``"connection"`` / ``"stream error CODE"`` (an error event after the 200); a refusal's
  ``Retry-After`` header is kept in ``extra["retry_after"]``.

A body without ``"stream": true`` (the bench/ scripts send some) is answered whole: its end-to-end latency and
usage are taken, and it has no TTFT or ITL. `vlserve bench` always streams.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx


@dataclass
class RequestResult:
    start: float  # time.perf_counter() just before sending
    end: float = 0.0
    ok: bool = False
    error: str | None = None
    status: int | None = None
    first_token: float | None = None  # perf_counter of the first text chunk
    last_token: float | None = None
    chunks: int = 0  # text chunks received
    output_tokens: int = 0
    prompt_tokens: int | None = None
    image_tokens: int | None = None
    usage_reported: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.start

    @property
    def e2e(self) -> float:
        return self.end - self.start

    @property
    def itl(self) -> float | None:
        if self.first_token is None or self.last_token is None or self.output_tokens <= 1:
            return None
        return (self.last_token - self.first_token) / (self.output_tokens - 1)

    def as_json(self, origin: float) -> dict[str, Any]:
        """The record as the JSON report keeps it: times in seconds from ``origin`` (the level's start)."""
        record = asdict(self)
        record.pop("extra")
        for key in ("start", "end", "first_token", "last_token"):
            if record[key] is not None:
                record[key] = round(record[key] - origin, 6)
        record.update(ttft=self.ttft, itl=self.itl, e2e=round(self.e2e, 6))
        return record


def error_key(status: int, body: bytes) -> str:
    """``"429 rate_limit_exceeded"``: the status and the envelope's code (else its type), or the status alone."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    code = error.get("code") or error.get("type") if isinstance(error, dict) else None
    return f"{status} {code}" if code not in (None, "") else str(status)


def _text(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta") or {}
    return any(delta.get(key) for key in ("content", "reasoning_content", "reasoning"))


def _take_usage(result: RequestResult, usage: dict[str, Any]) -> None:
    result.usage_reported = True
    result.output_tokens = int(usage.get("completion_tokens") or 0)
    if usage.get("prompt_tokens") is not None:
        result.prompt_tokens = int(usage["prompt_tokens"])
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and details.get("image_tokens") is not None:
        result.image_tokens = int(details["image_tokens"])


def _event(result: RequestResult, data: str, now: float) -> bool:
    """Take one SSE ``data:`` payload; true at the end of the stream."""
    if data.strip() == "[DONE]":
        return True
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    if isinstance(chunk.get("error"), dict):  # vLLM and vlserve report a failure after the 200 this way
        code = chunk["error"].get("code") or chunk["error"].get("type") or ""
        result.error = f"stream error {code}".strip()
        return True
    if any(_text(choice) for choice in chunk.get("choices") or []):
        if result.first_token is None:
            result.first_token = now
        result.last_token = now
        result.chunks += 1
    if isinstance(chunk.get("usage"), dict):
        _take_usage(result, chunk["usage"])
    return False


def _whole(result: RequestResult, raw: bytes) -> None:
    """Take a non-streamed completion: its usage (without one, each choice counts as one chunk)."""
    try:
        completion = json.loads(raw)
    except ValueError:
        result.error = "bad response"
        return
    if not isinstance(completion, dict):
        result.error = "bad response"
        return
    result.chunks = len(completion.get("choices") or [])
    if isinstance(completion.get("usage"), dict):
        _take_usage(result, completion["usage"])


async def stream_chat(client: httpx.AsyncClient, url: str, body: dict[str, Any], *, timeout: float) -> RequestResult:
    """POST ``body`` to ``url`` (…/v1/chat/completions) and time its stream (or its whole answer, when ``body``
    does not stream), ``timeout`` seconds at most in all; never raises for a failed request."""
    result = RequestResult(start=time.perf_counter())
    try:
        async with asyncio.timeout(timeout), client.stream("POST", url, json=body) as response:
            result.status = response.status_code
            if response.status_code != 200:
                if (retry_after := response.headers.get("retry-after")) is not None:
                    result.extra["retry_after"] = retry_after
                result.error = error_key(response.status_code, await response.aread())
                return result
            if not body.get("stream"):
                _whole(result, await response.aread())
            else:
                async for line in response.aiter_lines():
                    if line.startswith("data:") and _event(result, line[5:].strip(), time.perf_counter()):
                        break
    except (httpx.TimeoutException, TimeoutError):
        result.error = "timeout"
    except httpx.HTTPError:  # refused, reset, a stream cut short
        result.error = "connection"
    finally:
        result.end = time.perf_counter()
    if result.error is None:
        if not result.usage_reported:
            result.output_tokens = result.chunks
        result.ok = True
    return result
