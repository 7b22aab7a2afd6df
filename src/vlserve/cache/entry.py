"""A cached answer as data: the engine's deltas in order, as compact JSON.

Each delta keeps what the response shapes read (text, finish reason, token ids, usage, logprobs, tool-call
pieces, reasoning), so a cached answer renders through the same functions as a fresh one, chunk for chunk. Fields at
their default are left out. :func:`decode` raises ValueError on anything it did not write.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vlserve.engine.base import Delta, TokenLogprob, ToolCallDelta, Usage

VERSION = 1


def _logprob(entry: TokenLogprob) -> list[Any]:
    return [entry.token, entry.logprob, None if entry.bytes is None else list(entry.bytes),
            [_logprob(top) for top in entry.top]]  # fmt: skip


def _delta(delta: Delta) -> dict[str, Any]:
    item: dict[str, Any] = {"t": delta.text}
    if delta.finish_reason is not None:
        item["f"] = delta.finish_reason
    if delta.token_ids:
        item["i"] = list(delta.token_ids)
    if delta.usage is not None:
        item["u"] = [delta.usage.prompt_tokens, delta.usage.completion_tokens, delta.usage.image_tokens]
        if delta.usage.reasoning_tokens is not None:
            item["u"].append(delta.usage.reasoning_tokens)
    if delta.logprobs:
        item["l"] = [_logprob(entry) for entry in delta.logprobs]
    if delta.tool_calls:
        item["c"] = [[piece.index, piece.id, piece.name, piece.arguments] for piece in delta.tool_calls]
    if delta.reasoning:
        item["r"] = delta.reasoning
    if delta.prompt_tokens is not None:
        item["p"] = delta.prompt_tokens
    return item


def encode(deltas: Sequence[Delta]) -> bytes:
    payload = {"v": VERSION, "d": [_delta(delta) for delta in deltas]}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _token_logprob(item: list[Any]) -> TokenLogprob:
    token, logprob, raw, top = item
    return TokenLogprob(token, logprob, None if raw is None else tuple(raw), tuple(_token_logprob(t) for t in top))


def _decoded(item: dict[str, Any]) -> Delta:
    usage = item.get("u")
    return Delta(
        item["t"],
        item.get("f"),
        tuple(item.get("i", ())),
        None if usage is None else Usage(*usage),
        tuple(_token_logprob(entry) for entry in item.get("l", ())),
        tuple(ToolCallDelta(*piece) for piece in item.get("c", ())),
        reasoning=item.get("r", ""),
        prompt_tokens=item.get("p"),
    )


def decode(data: bytes) -> tuple[Delta, ...]:
    """The deltas ``encode`` stored; ValueError when ``data`` is not such an entry (or of another version)."""
    try:
        payload = json.loads(data)
        if payload["v"] != VERSION:
            raise ValueError(f"cache entry version {payload['v']}")
        deltas = tuple(_decoded(item) for item in payload["d"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a cache entry: {type(exc).__name__}") from None
    if not deltas or deltas[-1].finish_reason is None:
        raise ValueError("not a cache entry: no finished answer")
    return deltas
