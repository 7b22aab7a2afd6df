"""A scriptable OpenAI-compatible upstream on a loopback port, for the remote engine's service tests.

It answers like vLLM: ``/health``, ``/v1/models`` (with ``max_model_len``), ``/v1/chat/completions`` and
``/v1/completions`` (streamed: word deltas, a finish chunk, a usage chunk, ``[DONE]``; else one JSON
completion). A request with ``logprobs`` gets canned log probabilities in its endpoint's shape (chat's
``logprobs.content``, or the legacy parallel lists). ``behaviour`` picks another answer: ``"tools"`` (one
call of ``lookup`` with ``{"city": "Paris"}``, finish reason ``tool_calls``, streamed in three pieces),
or a failure: ``"500"``, ``"429"``, ``"400"`` (an error naming its own address),
``"slow"`` (nothing for ``delay`` s), ``"break"`` (the
connection drops after the first token), ``"unhealthy"`` (``/health`` answers 503) or ``"no-health"``
(no ``/health`` route). Every request is recorded, with its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.e2e.server import free_port

ANSWER = "a stub answer from"
CALL = {"id": "call_stub", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}


@dataclass
class Stub:
    name: str
    port: int
    behaviour: str = "ok"
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    def stop(self) -> None:
        """Shut the server down: its port refuses connections from now on."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def words(self) -> list[str]:
        return [*ANSWER.split(), self.name]


def _chunk(choices: list[dict], **extra: Any) -> str:
    return "data: " + json.dumps(
        {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "choices": choices, **extra}
    )


def _chat(body: dict) -> bool:
    return "messages" in body


def _logprobs(body: dict, pieces: list[str], start: int = 0) -> dict | None:
    """Canned logprobs of ``pieces`` (the answer's tokens from number ``start`` on) in the shape of ``body``'s
    endpoint: the n-th token of the answer has -(n+1)/10, its alternative "?" one less."""
    if not body.get("logprobs"):
        return None
    values = [-(n + 1) / 10 for n in range(start, start + len(pieces))]
    if _chat(body):
        top = body.get("top_logprobs") or 0
        content = []
        for piece, value in zip(pieces, values, strict=True):
            entry = {"token": piece, "logprob": value, "bytes": list(piece.encode())}
            alternatives = [entry, {"token": "?", "logprob": value - 1, "bytes": [63]}][:top]
            content.append({**entry, "top_logprobs": alternatives})
        return {"content": content}
    offsets = [sum(len(p) for p in pieces[:n]) for n in range(len(pieces))]
    tops = [{piece: value, "?": value - 1} for piece, value in zip(pieces, values, strict=True)]
    return {"tokens": pieces, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}


def _text_choice(body: dict, pieces: list[str], start: int = 0, **extra: Any) -> dict:
    """A choice carrying ``pieces`` of text (from the answer's token ``start`` on): chat's ``delta`` (or
    ``message``), or a completion's ``text``."""
    text = "".join(pieces)
    if _chat(body):
        key = "delta" if body.get("stream") else "message"
        content = {"content": text} if body.get("stream") else {"role": "assistant", "content": text}
        return {"index": 0, key: content, "logprobs": _logprobs(body, pieces, start), **extra}
    return {"index": 0, "text": text, "logprobs": _logprobs(body, pieces, start), **extra}


def _app(stub: Stub) -> Starlette:
    async def health(request: Request) -> Response:
        if stub.behaviour == "no-health":
            return Response(status_code=404)
        return Response(status_code=503 if stub.behaviour == "unhealthy" else 200)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "stub-model", "max_model_len": 1000}]})

    async def chat(request: Request) -> Response:
        body = await request.json()
        stub.requests.append(body)
        stub.paths.append(request.url.path)
        stub.headers.append(dict(request.headers))
        if stub.behaviour in ("500", "429"):
            headers = {"Retry-After": "7"} if stub.behaviour == "429" else {}
            message = {"error": {"message": f"stub {stub.behaviour}", "type": "x", "code": int(stub.behaviour)}}
            return JSONResponse(message, status_code=int(stub.behaviour), headers=headers)
        if stub.behaviour == "400":
            text = f"bad request at {stub.url} and 127.0.0.1:{stub.port}, key {request.headers.get('authorization')}"
            error = {"message": text, "type": "BadRequestError", "param": "messages", "code": "context_too_long"}
            return JSONResponse({"error": error}, status_code=400)
        if not body.get("stream"):
            return JSONResponse(await _whole(stub, body))
        return StreamingResponse(_stream(stub, body), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", chat, methods=["POST"]),
        ]
    )


def _answer(stub: Stub, body: dict) -> tuple[list[str], str, dict]:
    """(the words answered, the finish reason, the usage) for ``body``'s token limit."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")  # a chat's field, or a completion's
    words = stub.words()[: limit or 100]
    reason = "length" if len(words) < len(stub.words()) else "stop"
    return words, reason, {"prompt_tokens": 42, "completion_tokens": len(words), "total_tokens": 42 + len(words)}


async def _whole(stub: Stub, body: dict) -> dict:
    await asyncio.sleep(stub.delay if stub.behaviour == "slow" else 0)
    words, reason, usage = _answer(stub, body)
    if stub.behaviour == "tools":
        message = {"role": "assistant", "content": None, "tool_calls": [CALL]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return {"id": "chatcmpl-stub", "object": "chat.completion", "choices": [choice], "usage": usage}
    pieces = [(" " if n else "") + word for n, word in enumerate(words)]
    choice = _text_choice(body, pieces, finish_reason=reason, token_ids=list(range(len(words))))
    kind = "chat.completion" if _chat(body) else "text_completion"
    return {"id": "chatcmpl-stub", "object": kind, "choices": [choice], "usage": usage}


async def _stream(stub: Stub, body: dict) -> AsyncIterator[str]:
    if stub.behaviour == "slow":
        await asyncio.sleep(stub.delay)
    if _chat(body):
        yield _chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]) + "\n\n"
    words, reason, usage = _answer(stub, body)
    if stub.behaviour == "tools":
        async for event in _stream_call(usage):
            yield event
        return
    kind = "chat.completion.chunk" if _chat(body) else "text_completion"
    for n, word in enumerate(words):
        yield _chunk([_text_choice(body, [(" " if n else "") + word], n, token_ids=[n])], object=kind) + "\n\n"
        if stub.behaviour == "break":  # after the first token has surely arrived
            await asyncio.sleep(0.3)
            raise RuntimeError("the stub drops the connection")
    finish = {"index": 0, "delta": {}} if _chat(body) else {"index": 0, "text": ""}
    yield _chunk([{**finish, "finish_reason": reason}], object=kind) + "\n\n"
    yield _chunk([], usage=usage, object=kind) + "\n\n"
    yield "data: [DONE]\n\n"


async def _stream_call(usage: dict) -> AsyncIterator[str]:
    """``CALL`` as vLLM streams it: id, type and name with empty arguments, then the arguments in two pieces."""
    first = {"index": 0, "id": CALL["id"], "type": "function", "function": {"name": "lookup", "arguments": ""}}
    pieces = [
        first,
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Paris"}'}},
    ]
    for piece in pieces:
        yield _chunk([{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]) + "\n\n"
    yield _chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]) + "\n\n"
    yield _chunk([], usage=usage) + "\n\n"
    yield "data: [DONE]\n\n"


@contextlib.contextmanager
def serve_stubs(*names: str) -> Iterator[list[Stub]]:
    """One stub server per name, each on its own free loopback port, for the duration of the block."""
    stubs = [Stub(name, free_port()) for name in names]
    for stub in stubs:
        config = uvicorn.Config(_app(stub), host="127.0.0.1", port=stub.port, log_level="warning", lifespan="off")
        stub.server = uvicorn.Server(config)
        stub.thread = threading.Thread(target=stub.server.run, daemon=True)
        stub.thread.start()
    deadline = time.monotonic() + 10
    while not all(s.server.started for s in stubs) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield stubs
    finally:
        for stub in stubs:
            stub.stop()
