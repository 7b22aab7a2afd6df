"""A stand-in OpenAI-compatible streaming server whose timing the test sets, on a free loopback port.

``/v1/chat/completions`` waits ``first`` seconds, then sends ``tokens`` content chunks
``gap`` seconds apart (one token each), a finish chunk, a usage chunk (``prompt_tokens`` 100, with
``prompt_tokens_details.image_tokens`` 64 when ``image_tokens`` is set) and ``[DONE]``; a request without
``"stream": true`` gets the same usage in one completion after the same time. ``fail`` makes every
``fail_every``-th request answer that status with an OpenAI error envelope instead (code ``fail_code``,
``Retry-After: 1``).
``key`` turns on bearer auth. ``models`` lists the ids of ``/v1/models``; ``not_openai`` answers an HTML page
there instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.server import free_port


@dataclass
class Timing:
    first: float = 0.05
    gap: float = 0.02
    tokens: int = 8
    image_tokens: bool = False
    fail: int | None = None
    fail_every: int = 2
    fail_code: str = "rate_limit_exceeded"
    key: str | None = None
    models: tuple[str, ...] = ("timed-model",)
    not_openai: bool = False
    bodies: list[dict[str, Any]] = field(default_factory=list)
    counter: itertools.count = field(default_factory=itertools.count)


def _chunk(**fields: Any) -> str:
    return "data: " + json.dumps({"id": "chatcmpl-t", "object": "chat.completion.chunk", **fields}) + "\n\n"


async def _stream(timing: Timing) -> AsyncIterator[str]:
    await asyncio.sleep(timing.first)
    yield _chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for n in range(timing.tokens):
        if n:
            await asyncio.sleep(timing.gap)
        yield _chunk(choices=[{"index": 0, "delta": {"content": f" w{n}"}, "finish_reason": None}])
    yield _chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "length"}])
    usage: dict[str, Any] = {"prompt_tokens": 100, "completion_tokens": timing.tokens, "total_tokens": 100}
    if timing.image_tokens:
        usage["prompt_tokens_details"] = {"image_tokens": 64, "cached_tokens": 0}
    yield _chunk(choices=[], usage=usage)
    yield "data: [DONE]\n\n"


async def _whole(timing: Timing) -> dict[str, Any]:
    await asyncio.sleep(timing.first + max(0, timing.tokens - 1) * timing.gap)
    message = {"role": "assistant", "content": "".join(f" w{n}" for n in range(timing.tokens))}
    usage = {"prompt_tokens": 100, "completion_tokens": timing.tokens, "total_tokens": 100 + timing.tokens}
    choice = {"index": 0, "message": message, "finish_reason": "length"}
    return {"id": "chatcmpl-t", "object": "chat.completion", "choices": [choice], "usage": usage}


def _app(timing: Timing) -> Starlette:
    def authorised(request: Request) -> bool:
        return timing.key is None or request.headers.get("authorization") == f"Bearer {timing.key}"

    def refused() -> JSONResponse:
        error = {"message": "bad key", "type": "authentication_error", "code": "invalid_api_key"}
        return JSONResponse({"error": error}, status_code=401)

    async def models(request: Request) -> Response:
        if timing.not_openai:
            return HTMLResponse("<html>a web page</html>")
        if not authorised(request):
            return refused()
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model"} for m in timing.models]})

    async def chat(request: Request) -> Response:
        if not authorised(request):
            return refused()
        timing.bodies.append(await request.json())
        n = next(timing.counter)
        if timing.fail is not None and n % timing.fail_every == 0:
            error = {"message": "no", "type": "server_error", "code": timing.fail_code}
            return JSONResponse({"error": error}, status_code=timing.fail, headers={"Retry-After": "1"})
        if not timing.bodies[-1].get("stream"):
            return JSONResponse(await _whole(timing))
        return StreamingResponse(_stream(timing), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


@contextlib.contextmanager
def serve_timed(timing: Timing) -> Iterator[str]:
    """Run the server for the block; yields its base URL (http://127.0.0.1:PORT, no /v1)."""
    port = free_port()
    config = uvicorn.Config(_app(timing), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
