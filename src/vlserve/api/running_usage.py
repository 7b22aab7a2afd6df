"""``stream_options.continuous_usage_stats`` (vLLM's extension): the usage so far on every chunk of a stream.

The prompt's length comes from the first delta that states it (an engine that counts the prompt exactly says it
on its first delta; a remote engine relays its upstream's running usage), the completion's from the upstream's
running count or else the token ids each delta carries; the last delta's own usage is the final word.
"""

from __future__ import annotations

from typing import Any

from vlserve.engine.base import Delta, Usage


class RunningUsage:
    def __init__(self) -> None:
        self._prompt = 0
        self._completion = 0
        self._final: Usage | None = None

    def add(self, delta: Delta) -> None:
        if delta.prompt_tokens is not None:
            self._prompt = delta.prompt_tokens
        if delta.completion_tokens is not None:  # an upstream's own running count
            self._completion = delta.completion_tokens
        else:
            self._completion += len(delta.token_ids)
        if delta.usage is not None:
            self._final = delta.usage

    def body(self) -> dict[str, Any]:
        if self._final is not None:
            prompt, completion = self._final.prompt_tokens, self._final.completion_tokens
        else:
            prompt, completion = self._prompt, self._completion
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
