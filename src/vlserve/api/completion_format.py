"""OpenAI response shapes for text completions (``object: "text_completion"``): the JSON body, the SSE chunks.

Log probabilities take the legacy shape: parallel lists ``tokens``, ``token_logprobs``, ``top_logprobs``
(one ``{token: logprob}`` per token, the sampled token included, as vLLM sends it) and ``text_offset``
(where each token starts in the returned text, the echoed prompt included).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from vlserve.api.chat_format import answer_body, ending_cleanly, sse, usage_body
from vlserve.api.running_usage import RunningUsage
from vlserve.engine.base import Delta, TokenLogprob
from vlserve.service import Completion


class LegacyLogprobs:
    """Turns token logprobs into the legacy shape, keeping count of the text offset across stream chunks."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def body(self, entries: tuple[TokenLogprob, ...]) -> dict[str, Any]:
        offsets = []
        for entry in entries:
            offsets.append(self.offset)
            self.offset += len(entry.token)
        return {
            "tokens": [e.token for e in entries],
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{**{t.token: t.logprob for t in e.top}, e.token: e.logprob} for e in entries],
            "text_offset": offsets,
        }


def completion_response(
    completion: Completion, *, model: str, request_id: str, echo: str, logprobs: bool, token_ids: bool
) -> dict:
    """The whole answer; ``echo`` is the prompt when the client asked for it back, else empty."""
    choice: dict[str, Any] = {
        "index": 0,
        "text": echo + completion.text,
        "logprobs": LegacyLogprobs(len(echo)).body(completion.logprobs) if logprobs else None,
        "finish_reason": completion.finish_reason,
    }
    if token_ids:
        choice["token_ids"] = list(completion.token_ids)
    return answer_body("text_completion", f"cmpl-{request_id}", model, choice, completion)


async def completion_chunks(
    deltas: AsyncIterator[Delta],
    *,
    model: str,
    request_id: str,
    include_usage: bool,
    echo: str,
    logprobs: bool,
    token_ids: bool,
    continuous_usage: bool = False,
) -> AsyncIterator[str]:
    """SSE chunks as OpenAI streams them: the echoed prompt (if any), text chunks, a finish chunk, then (only
    when ``include_usage``) one chunk with empty ``choices`` and the usage, then ``[DONE]``. An error after
    the first byte is one event in the error envelope. Closing this closes ``deltas`` (cancelling generation)."""
    base = {"id": f"cmpl-{request_id}", "object": "text_completion", "created": int(time.time()), "model": model}
    legacy = LegacyLogprobs(len(echo))
    running = RunningUsage() if continuous_usage else None

    def chunk(text: str, delta: Delta | None, finish: str | None = None) -> str:
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        if delta is not None:
            if logprobs and delta.logprobs:
                choice["logprobs"] = legacy.body(delta.logprobs)
            if token_ids:
                choice["token_ids"] = list(delta.token_ids)
            if running is not None:  # stream_options.continuous_usage_stats: the usage so far
                return sse({**base, "choices": [choice], "usage": running.body()})
        return sse({**base, "choices": [choice]})

    async def events() -> AsyncIterator[str]:
        if echo:
            yield chunk(echo, None)
        async for delta in deltas:
            if running is not None:
                running.add(delta)
            reported = delta.text or (token_ids and delta.token_ids) or (logprobs and delta.logprobs)
            if delta.finish_reason is None and not reported:
                continue  # text held back (a possible stop string), no tokens to report: nothing to send yet
            yield chunk(delta.text, delta, delta.finish_reason)
            if delta.finish_reason is not None and include_usage and delta.usage is not None:
                yield sse({**base, "choices": [], "usage": usage_body(delta.usage)})

    async for event in ending_cleanly(events(), deltas):
        yield event
