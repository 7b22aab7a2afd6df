"""OpenAI response shapes for chat completions: the JSON body, and the SSE chunks of a stream.

A reasoning model's thinking goes out apart from its answer, under both names clients read (see
:mod:`vlserve.engine.reasoning`): ``reasoning_content`` and ``reasoning``, in the message and in stream deltas;
the usage then says how many of the completion tokens were reasoning (``completion_tokens_details``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from vlserve.api.protocol import usage
from vlserve.api.running_usage import RunningUsage
from vlserve.engine.base import Delta, TokenLogprob, ToolCall, ToolCallDelta, Usage
from vlserve.errors import ServerError, VLServeError, error_body
from vlserve.observability.accounting import note_error
from vlserve.service import Completion
from vlserve.service.shutdown import until_shutdown


def sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def usage_body(counts: Usage) -> dict[str, Any]:
    body: dict[str, Any] = usage(counts.prompt_tokens, counts.completion_tokens)
    if counts.reasoning_tokens is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": counts.reasoning_tokens}
    return body


def reasoning_fields(reasoning: str) -> dict[str, str]:
    """A reasoning model's thinking under DeepSeek's (and litellm's, LangChain's) name and vLLM's."""
    return {"reasoning_content": reasoning, "reasoning": reasoning}


def answer_body(kind: str, answer_id: str, model: str, choice: dict[str, Any], completion: Completion) -> dict:
    """The envelope of a whole (non-streamed) answer around its one choice."""
    return {"id": answer_id, "object": kind, "created": int(time.time()), "model": model, "choices": [choice],
            "usage": usage_body(completion.usage)}  # fmt: skip


async def ending_cleanly(events: AsyncIterator[str], deltas: AsyncIterator[Delta]) -> AsyncIterator[str]:
    """``events``, then ``[DONE]``: an error after the first byte becomes one event in the error envelope,
    and closing this closes ``deltas`` (cancelling generation). A stream still running at the server's
    shutdown deadline ends the same way, between two events, with the code ``shutting_down``."""
    try:
        async for event in until_shutdown(events):
            yield event
    except VLServeError as exc:
        note_error(exc.code)  # the response said 200: the error is counted by the code the client read
        yield sse(error_body(exc))
    except Exception:  # noqa: BLE001 - an unexpected failure still ends the stream cleanly
        failure = ServerError("generation failed; see the server log")
        note_error(failure.code)
        yield sse(error_body(failure))
    finally:
        await deltas.aclose()
    yield sse("[DONE]")


def _token_logprob(entry: TokenLogprob) -> dict[str, Any]:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": None if entry.bytes is None else list(entry.bytes)}


def logprobs_body(entries: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    """OpenAI's chat ``logprobs``: per token, its logprob and bytes and the ``top_logprobs`` alternatives."""
    content = [{**_token_logprob(e), "top_logprobs": [_token_logprob(t) for t in e.top]} for e in entries]
    return {"content": content, "refusal": None}


def _call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _call_piece(piece: ToolCallDelta) -> dict[str, Any]:
    """A streamed tool-call piece: the first of a call carries its id, type and name."""
    if piece.id is None:
        return {"index": piece.index, "function": {"arguments": piece.arguments}}
    function = {"name": piece.name, "arguments": piece.arguments}
    return {"index": piece.index, "id": piece.id, "type": "function", "function": function}


def chat_response(
    completion: Completion,
    *,
    model: str,
    request_id: str,
    token_ids: bool = False,
    logprobs: bool = False,
    include_reasoning: bool = True,  # False: a reasoning model's thinking is left out (its tokens still count)
) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if completion.reasoning is not None:  # an answer cut off while reasoning has no content
        message["content"] = completion.text or None
        if include_reasoning:
            message.update(reasoning_fields(completion.reasoning))
    if completion.tool_calls:
        message["content"] = completion.text or None
        message["tool_calls"] = [_call(call) for call in completion.tool_calls]
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": completion.finish_reason,
        "logprobs": logprobs_body(completion.logprobs) if logprobs else None,
    }
    if token_ids:
        choice["token_ids"] = list(completion.token_ids)
    return answer_body("chat.completion", f"chatcmpl-{request_id}", model, choice, completion)


async def chat_chunks(
    deltas: AsyncIterator[Delta],
    *,
    model: str,
    request_id: str,
    include_usage: bool,
    token_ids: bool = False,
    logprobs: bool = False,
    include_reasoning: bool = True,
    continuous_usage: bool = False,
) -> AsyncIterator[str]:
    """SSE chunks as OpenAI streams them: a role chunk, content and tool-call chunks, a finish chunk, then
    (only when ``include_usage``) one chunk with empty ``choices`` and the usage, then ``[DONE]``. With
    ``continuous_usage`` every chunk after the role chunk also carries the usage so far. An error after the
    first byte is one event in the error envelope. Closing this closes ``deltas`` (cancelling generation)."""
    base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}  # fmt: skip
    running = RunningUsage() if continuous_usage else None

    def chunk(delta: Delta | None, content: dict, finish: str | None = None) -> str:
        choice: dict[str, Any] = {"index": 0, "delta": content, "finish_reason": finish, "logprobs": None}
        extra: dict[str, Any] = {}
        if delta is not None:
            if token_ids:
                choice["token_ids"] = list(delta.token_ids)
            if logprobs and delta.logprobs:
                choice["logprobs"] = logprobs_body(delta.logprobs)
            if running is not None:
                extra["usage"] = running.body()
        return sse({**base, "choices": [choice], **extra})

    def content(delta: Delta) -> dict[str, Any]:
        body: dict[str, Any] = (
            {"content": delta.text} if delta.text or not (delta.tool_calls or delta.reasoning) else {}
        )
        if delta.reasoning:
            body.update(reasoning_fields(delta.reasoning))
        if delta.tool_calls:
            body["tool_calls"] = [_call_piece(piece) for piece in delta.tool_calls]
        return body

    def empty(delta: Delta) -> bool:  # text held back, no tokens to report: nothing to send yet
        return not (
            delta.text or delta.reasoning or delta.tool_calls or (token_ids and delta.token_ids)
            or (logprobs and delta.logprobs)
        )  # fmt: skip

    async def events() -> AsyncIterator[str]:
        yield chunk(None, {"role": "assistant", "content": ""})
        async for delta in deltas:
            if running is not None:
                running.add(delta)
            if delta.reasoning and not include_reasoning:
                delta = dataclasses.replace(delta, reasoning="")
            if delta.finish_reason is None:
                if not empty(delta):
                    yield chunk(delta, content(delta))
                continue
            yield chunk(
                delta, content(delta) if delta.text or delta.tool_calls or delta.reasoning else {}, delta.finish_reason
            )
            if include_usage and delta.usage is not None:
                yield sse({**base, "choices": [], "usage": usage_body(delta.usage)})

    async for event in ending_cleanly(events(), deltas):
        yield event
