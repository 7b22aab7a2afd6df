"""OpenAI response shapes for chat completions: the JSON body, and the SSE chunks of a stream."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from vlserve.api.protocol import usage
from vlserve.engine.base import Delta, Usage
from vlserve.errors import ServerError, VLServeError, error_body
from vlserve.service import Completion


def sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def usage_body(counts: Usage) -> dict[str, int]:
    return usage(counts.prompt_tokens, counts.completion_tokens)


def chat_response(completion: Completion, *, model: str, request_id: str, token_ids: bool = False) -> dict:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": completion.text},
        "finish_reason": completion.finish_reason,
        "logprobs": None,
    }
    if token_ids:
        choice["token_ids"] = list(completion.token_ids)
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage_body(completion.usage),
    }


async def chat_chunks(
    deltas: AsyncIterator[Delta], *, model: str, request_id: str, include_usage: bool, token_ids: bool = False
) -> AsyncIterator[str]:
    """SSE chunks as OpenAI streams them: a role chunk, content chunks, a finish chunk, then (only when
    ``include_usage``) one chunk with empty ``choices`` and the usage, then ``[DONE]``. An error after the
    first byte is one event in the error envelope. Closing this closes ``deltas`` (cancelling generation)."""
    base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}  # fmt: skip

    def chunk(delta: Delta | None, content: dict, finish: str | None = None) -> str:
        choice: dict[str, Any] = {"index": 0, "delta": content, "finish_reason": finish, "logprobs": None}
        if token_ids and delta is not None:
            choice["token_ids"] = list(delta.token_ids)
        return sse({**base, "choices": [choice]})

    yield chunk(None, {"role": "assistant", "content": ""})
    try:
        async for delta in deltas:
            if delta.finish_reason is None:
                yield chunk(delta, {"content": delta.text})
                continue
            yield chunk(delta, {"content": delta.text} if delta.text else {}, delta.finish_reason)
            if include_usage and delta.usage is not None:
                yield sse({**base, "choices": [], "usage": usage_body(delta.usage)})
    except VLServeError as exc:
        yield sse(error_body(exc))
    except Exception:  # noqa: BLE001 - an unexpected failure still ends the stream cleanly
        yield sse(error_body(ServerError("generation failed; see the server log")))
    finally:
        await deltas.aclose()
    yield sse("[DONE]")
