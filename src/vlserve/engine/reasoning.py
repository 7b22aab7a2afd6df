"""Reasoning models: telling a checkpoint that thinks, and splitting its reasoning from its answer.

Qwen3-VL's Thinking checkpoints write their reasoning between ``<think>`` and ``</think>``, then the
answer. Their chat template's generation prompt already opens the block (``<|im_start|>assistant\\n<think>\\n``),
so the generated text is usually ``…reasoning…\\n</think>\\n\\nanswer``; a hybrid Qwen3 template leaves
the choice to the model, which then opens the block itself, and with ``enable_thinking: false`` closes an
empty one in the prompt. :func:`answer_starts_in_reasoning` reads which of these a rendered prompt is, so
the splitter starts in the right place whatever the template and its ``chat_template_kwargs`` did.

Only a checkpoint that thinks (:func:`template_thinks`: its template mentions both markers and its
tokenizer has them as tokens) gets its answers split; any other answer is passed on untouched.

On the wire the reasoning goes out twice, under both names clients read: ``reasoning_content`` (DeepSeek's
API, which litellm, LangChain and most OpenAI-compatible SDKs read) and ``reasoning`` (vLLM's name since
it renamed ``reasoning_content``; vLLM 0.32 sends only ``reasoning``, in messages and stream deltas). A
client written for either finds it, and neither sees the markers: ``content`` holds only the answer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Container
from pathlib import Path
from typing import Any

from vlserve.engine.base import Delta

THINK_START = "<think>"
THINK_END = "</think>"
ANSWER_SEPARATOR = "\n\n"  # what Qwen's templates put between ``</think>`` and the answer

_START, _REASONING, _LEAD, _CONTENT = "start", "reasoning", "lead", "content"


def template_thinks(chat_template: str, vocabulary: Container[str]) -> bool:
    """Whether a checkpoint thinks: its chat template mentions ``<think>`` and ``</think>``, and its
    tokenizer knows both as tokens (``vocabulary``: the token strings, added tokens included)."""
    return all(marker in chat_template and marker in vocabulary for marker in (THINK_START, THINK_END))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _template_of(model_dir: Path) -> str:
    """The chat template a checkpoint directory ships (as :func:`find_chat_template` looks for it)."""
    config = _json(model_dir / "tokenizer_config.json")
    if isinstance(config, dict) and isinstance(config.get("chat_template"), str):
        return config["chat_template"]
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = _json(model_dir / "chat_template.json")
    if isinstance(as_json, dict) and isinstance(as_json.get("chat_template"), str):
        return as_json["chat_template"]
    return ""


def _added_tokens(model_dir: Path) -> set[str]:
    """The tokenizer's added tokens, from ``tokenizer.json`` and ``tokenizer_config.json``."""
    tokens: set[str] = set()
    tokenizer = _json(model_dir / "tokenizer.json")
    if isinstance(tokenizer, dict):
        tokens.update(t.get("content") for t in tokenizer.get("added_tokens") or () if isinstance(t, dict))
    config = _json(model_dir / "tokenizer_config.json")
    if isinstance(config, dict) and isinstance(config.get("added_tokens_decoder"), dict):
        tokens.update(t.get("content") for t in config["added_tokens_decoder"].values() if isinstance(t, dict))
    return {t for t in tokens if isinstance(t, str)}


def checkpoint_thinks(model_dir: Path) -> bool:
    """:func:`template_thinks` for a checkpoint directory, read from its files (no tokenizer loaded)."""
    return template_thinks(_template_of(model_dir), _added_tokens(model_dir))


def answer_starts_in_reasoning(prompt: str) -> bool:
    """Whether a rendered chat prompt leaves a ``<think>`` block open, so the answer begins with reasoning."""
    return prompt.rstrip().endswith(THINK_START)


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class ReasoningSplitter:
    """Splits a streamed answer into reasoning and content; neither marker is ever released.

    ``opened``: the prompt left a ``<think>`` block open. Otherwise the answer is content unless it begins
    (after whitespace) with ``<think>``. Text that may be the start of a marker is held until it is known;
    whitespace around the reasoning and between ``</think>`` and the answer is dropped, and so is a
    ``</think>`` repeated in the answer.
    """

    def __init__(self, *, opened: bool) -> None:
        self._state = _REASONING if opened else _START
        self._buffer = ""
        self._spaces = ""  # whitespace inside the reasoning, held until more reasoning follows it
        self._begun = False  # some reasoning has been released

    @property
    def thinking(self) -> bool:
        """Inside the reasoning now (its closing marker not yet read)."""
        return self._state == _REASONING

    def push(self, text: str) -> tuple[str, str]:
        """(reasoning, content) releasable after ``text``."""
        self._buffer += text
        reasoning: list[str] = []
        content: list[str] = []
        while self._step(reasoning, content):
            pass
        return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        """(reasoning, content) left once generation has ended; reasoning cut off there is returned as it is."""
        rest, self._buffer = self._buffer, ""
        if self._state == _REASONING:
            reasoning: list[str] = []
            self._reason(rest if self._begun else rest.lstrip(), reasoning)
            return "".join(reasoning), ""
        if self._state == _LEAD:
            return "", rest.lstrip()
        return "", rest

    def _reason(self, text: str, out: list[str]) -> None:
        if text.strip():
            stripped = text.rstrip()
            out.append(self._spaces + stripped)
            self._spaces = text[len(stripped) :]
            self._begun = True
        else:
            self._spaces += text

    def _step(self, reasoning: list[str], content: list[str]) -> bool:
        """Consume what can be decided from the buffer; True when another step may consume more."""
        if self._state == _START:
            head = self._buffer.lstrip()
            if head.startswith(THINK_START):
                self._buffer, self._state = head[len(THINK_START) :], _REASONING
                return True
            if not head or THINK_START.startswith(head):
                return False  # only whitespace yet, or what may still become <think>
            self._state = _CONTENT
            return True
        if self._state == _REASONING:
            return self._step_reasoning(reasoning)
        if self._state == _LEAD:  # whitespace and repeated closing markers before the answer are dropped
            self._buffer = self._buffer.lstrip()
            if self._buffer.startswith(THINK_END):
                self._buffer = self._buffer[len(THINK_END) :]
                return True
            if not self._buffer or THINK_END.startswith(self._buffer):
                return False
            self._state = _CONTENT
        end = self._buffer.find(THINK_END)  # a stray closing marker in the answer is dropped, as vLLM does
        if end >= 0:
            content.append(self._buffer[:end])
            self._buffer = self._buffer[end + len(THINK_END) :]
            return True
        keep = _partial_suffix(self._buffer, THINK_END)
        content.append(self._buffer[: len(self._buffer) - keep])
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return False

    def _step_reasoning(self, reasoning: list[str]) -> bool:
        if not self._begun:  # before any reasoning: leading whitespace, and a repeated <think>, are dropped
            self._buffer = self._buffer.lstrip()
            if self._buffer.startswith(THINK_START):
                self._buffer = self._buffer[len(THINK_START) :]
                return True
            if self._buffer and THINK_START.startswith(self._buffer):
                return False
        end = self._buffer.find(THINK_END)
        if end >= 0:
            self._reason(self._buffer[:end], reasoning)
            self._buffer, self._state, self._spaces = self._buffer[end + len(THINK_END) :], _LEAD, ""
            return True
        keep = _partial_suffix(self._buffer, THINK_END)
        self._reason(self._buffer[: len(self._buffer) - keep], reasoning)
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return False


async def with_reasoning(deltas: AsyncIterator[Delta], *, opened: bool) -> AsyncIterator[Delta]:
    """The answer's deltas with the reasoning moved from ``text`` to ``reasoning``; the last delta's usage
    counts the tokens generated while reasoning (the closing marker's included). Closing this closes ``deltas``."""
    splitter = ReasoningSplitter(opened=opened)
    reasoning_tokens = 0
    try:
        async for delta in deltas:
            was_thinking = splitter.thinking
            reasoning, text = splitter.push(delta.text)
            if was_thinking or splitter.thinking:
                reasoning_tokens += len(delta.token_ids)
            usage = delta.usage
            if delta.finish_reason is not None:
                more, rest = splitter.finish()
                reasoning, text = reasoning + more, text + rest
                if usage is not None:
                    usage = dataclasses.replace(usage, reasoning_tokens=reasoning_tokens)
            yield dataclasses.replace(delta, text=text, reasoning=reasoning, usage=usage)
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
