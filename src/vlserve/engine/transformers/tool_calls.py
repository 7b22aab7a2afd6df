"""Tool calls in Qwen's (Hermes) format: the grammar that enforces them, and the parser that reads them.

Qwen3-VL writes each call as ``<tool_call>\\n{"name": "NAME", "arguments": {…}}\\n</tool_call>``, the
format its chat template teaches (vLLM's ``hermes`` tool parser reads the same). :func:`structural_tag`
turns a request's tools and tool choice into an xgrammar structural tag, so that while decoding:

- ``auto``: the model writes text freely; once it opens ``<tool_call>``, the call must name one of the
  tools and its arguments must follow that tool's parameter schema;
- ``required``: the answer is one or more calls (exactly one when ``parallel_tool_calls`` is false);
- a named function: the answer is exactly one call of that function.

:class:`ToolCallParser` splits the streamed answer into content and :class:`ToolCallDelta` s as OpenAI
streams them: the call's id and name first, then its arguments piece by piece, as compact JSON (the grammar
lets the model put whitespace between tokens; OpenAI sends ``{"city":"Rome"}``), so that the pieces of a
streamed call add up to the whole call's arguments. An answer cut by the token limit inside a call's
markup leaks none of it: a call cut before its name is complete is dropped; one cut later is the partial
call OpenAI sends (its id, name and the arguments written so far), with ``finish_reason`` ``length``.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

from xgrammar.structural_tag import (
    JSONSchemaFormat,
    StructuralTag,
    TagFormat,
    TagsWithSeparatorFormat,
    TriggeredTagsFormat,
)

from vlserve.engine.base import Delta, EngineRequest, FinishReason, ToolCallDelta

TRIGGER = "<tool_call>"
_BEGIN = '<tool_call>\n{"name": "'
_ARGUMENTS = '", "arguments": '
_END = "}\n</tool_call>"
_CLOSE = "</tool_call>"
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_HEADER = re.compile(r'<tool_call>\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')
_NAME_END = re.compile(r'(?:[^"\\]|\\.)*"')  # the rest of a JSON string, to its closing quote
_FOOTER = re.compile(r"\}\s*</tool_call>")
_MAX_HEADER = 512  # an opened block that names no function within this many characters is plain text
_JSON_SPACE = frozenset(" \t\n\r")
_HEADER_BEFORE_NAME = (TRIGGER, None, "{", None, '"name"', None, ":", None, '"')  # None: optional whitespace
_HEADER_AFTER_NAME = (None, ",", None, '"arguments"', None, ":", None)


def _tag(function: Mapping[str, Any]) -> TagFormat:
    return TagFormat(
        begin=_BEGIN + str(function["name"]) + _ARGUMENTS,
        content=JSONSchemaFormat(json_schema=dict(function.get("parameters") or _NO_PARAMETERS), max_whitespace_cnt=1),
        end=_END,
    )


def structural_tag(request: EngineRequest) -> StructuralTag:
    """The xgrammar structural tag for an answer to ``request`` (which calls tools)."""
    functions = [tool["function"] for tool in request.tools]
    forced = request.forced_tool
    if forced is not None:
        return StructuralTag(format=_tag(next(f for f in functions if f["name"] == forced)))
    tags = [_tag(f) for f in functions]
    single = not request.parallel_tool_calls
    if request.tool_choice == "required":
        return StructuralTag(
            format=TagsWithSeparatorFormat(tags=tags, separator="\n", at_least_one=True, stop_after_first=single)
        )
    return StructuralTag(format=TriggeredTagsFormat(triggers=[TRIGGER], tags=tags, stop_after_first=single))


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def _unescape(name: str) -> str:
    return name.replace('\\"', '"').replace("\\\\", "\\")


class _Compactor:
    """Drops the whitespace between JSON tokens of text fed to it piece by piece; strings stay as written."""

    def __init__(self) -> None:
        self._in_string = False
        self._escaped = False

    def __call__(self, text: str) -> str:
        out: list[str] = []
        for char in text:
            if self._in_string:
                out.append(char)
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char not in _JSON_SPACE:
                out.append(char)
                self._in_string = char == '"'
        return "".join(out)


class ToolCallParser:
    """Splits streamed answer text into content and tool-call deltas.

    Text that may be the start of ``<tool_call>`` is held back until it is known; whitespace between
    and around calls is not content. Arguments are released as they come, compacted, except a tail that
    may be the block's closing ``}\\n</tool_call>``.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._spaces = ""  # whitespace held until content follows it
        self._index = -1  # the call being read, or the last one read
        self._in_call = False
        self._named = False  # the open call's name has been read
        self._said = False  # some content has been released
        self._compact = _Compactor()  # the open call's arguments, compacted
        self.calls = 0  # calls completed

    def push(self, text: str) -> tuple[str, tuple[ToolCallDelta, ...]]:
        """Content and tool-call deltas releasable after ``text``."""
        self._buffer += text
        content: list[str] = []
        calls: list[ToolCallDelta] = []
        while self._step(content, calls):
            pass
        return "".join(content), _merged(calls)

    def finish(self, reason: FinishReason) -> tuple[str, tuple[ToolCallDelta, ...], FinishReason]:
        """What is left once generation has ended, and the finish reason (``tool_calls`` after calls)."""
        content: list[str] = []
        calls: list[ToolCallDelta] = []
        rest, self._buffer = self._buffer, ""
        opened = False  # the answer ends inside the markup of a call
        if self._in_call and self._named:  # cut off inside the arguments, or while closing the block
            self._arguments(rest[: len(rest) - _footer_tail(rest)], calls)
        elif self._in_call and (cut := _cut_header(rest)) is not None:  # cut off before the arguments
            opened = True
            if cut:  # the name is whole: the call as far as it goes
                self._index += 1
                calls.append(ToolCallDelta(self._index, new_call_id(), cut, ""))
        elif reason == "length" and not self._said and rest.strip() and TRIGGER.startswith(rest.lstrip()):
            opened = True  # cut while opening a call, with nothing but calls before: markup, not content
        else:
            self._content(rest, content)
        if not self.calls and self._index < 0 and self._spaces and not opened:
            content.append(self._spaces)
        if self.calls and reason == "stop":
            reason = "tool_calls"
        return "".join(content), _merged(calls), reason

    def _content(self, text: str, out: list[str]) -> None:
        if not text:
            return
        if text.strip():
            stripped = text.rstrip()
            out.append(self._spaces + stripped)
            self._spaces = text[len(stripped) :]
            self._said = True
        else:
            self._spaces += text

    def _step(self, content: list[str], calls: list[ToolCallDelta]) -> bool:
        """Consume what can be decided from the buffer; True when another step may consume more."""
        if not self._in_call:
            start = self._buffer.find(TRIGGER)
            if start < 0:
                keep = _partial_suffix(self._buffer, TRIGGER)
                self._content(self._buffer[: len(self._buffer) - keep], content)
                self._buffer = self._buffer[len(self._buffer) - keep :]
                return False
            self._content(self._buffer[:start], content)
            self._buffer = self._buffer[start:]
            self._in_call, self._named = True, False
            return True
        if not self._named:
            header = _HEADER.match(self._buffer)
            if header is None:
                if len(self._buffer) > _MAX_HEADER or _CLOSE in self._buffer:  # not a call after all
                    self._content(self._buffer[: len(TRIGGER)], content)
                    self._buffer = self._buffer[len(TRIGGER) :]
                    self._in_call = False
                    return True
                return False
            self._index += 1
            self._named = True
            self._compact = _Compactor()
            calls.append(ToolCallDelta(self._index, new_call_id(), _unescape(header.group(1)), ""))
            self._buffer = self._buffer[header.end() :]
            self._spaces = ""
            return True
        footer = _FOOTER.search(self._buffer)
        if footer is None:
            keep = _footer_tail(self._buffer)
            if len(self._buffer) > keep:
                self._arguments(self._buffer[: len(self._buffer) - keep], calls)
                self._buffer = self._buffer[len(self._buffer) - keep :]
            return False
        self._arguments(self._buffer[: footer.start()], calls)
        self._buffer = self._buffer[footer.end() :]
        self._in_call = False
        self.calls += 1
        return True

    def _arguments(self, text: str, calls: list[ToolCallDelta]) -> None:
        """The next piece of the open call's arguments, compacted (nothing when it was only whitespace)."""
        if arguments := self._compact(text):
            calls.append(ToolCallDelta(self._index, arguments=arguments))


def _cut_header(text: str) -> str | None:
    """For ``text`` that ended while a call's opening was being written (``<tool_call>\\n{"name": "…", …``):
    the function's name once it is whole, else ``""``. None when ``text`` is not the start of a call."""
    at = _match_prefix(text, 0, _HEADER_BEFORE_NAME)
    if at is None or at == len(text):
        return None if at is None else ""
    close = _NAME_END.match(text, at)
    if close is None:  # the name is still being written
        return ""
    name = _unescape(text[at : close.end() - 1])
    return name if _match_prefix(text, close.end(), _HEADER_AFTER_NAME) is not None else None


def _match_prefix(text: str, at: int, pieces: tuple[str | None, ...]) -> int | None:
    """Where ``pieces`` (literals; None for optional whitespace) end when they match ``text`` from ``at``;
    ``len(text)`` when ``text`` ends part-way through them; None when ``text`` goes another way."""
    for piece in pieces:
        if piece is None:
            while at < len(text) and text[at].isspace():
                at += 1
            continue
        written = text[at : at + len(piece)]
        if not piece.startswith(written):
            return None
        at += len(written)
        if len(written) < len(piece):
            return at
    return at


def _merged(pieces: list[ToolCallDelta]) -> tuple[ToolCallDelta, ...]:
    """Consecutive pieces of one call as one piece (a call's name and first arguments in one chunk)."""
    out: list[ToolCallDelta] = []
    for piece in pieces:
        if out and out[-1].index == piece.index and piece.id is None:
            out[-1] = dataclasses.replace(out[-1], arguments=out[-1].arguments + piece.arguments)
        else:
            out.append(piece)
    return tuple(out)


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def _footer_tail(text: str) -> int:
    """Length of the tail of ``text`` that may be the start of the closing ``}`` + whitespace + ``</tool_call>``."""
    brace = text.rfind("}")
    if brace < 0:
        return 0
    rest = text[brace + 1 :].lstrip()
    return len(text) - brace if _CLOSE.startswith(rest) else 0


async def with_tool_calls(deltas: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    """The answer's deltas with ``<tool_call>`` blocks turned into tool-call deltas (token ids, logprobs and
    usage stay on the delta that carried them); closing this closes ``deltas``."""
    parser = ToolCallParser()
    try:
        async for delta in deltas:
            text, calls = parser.push(delta.text)
            reason = delta.finish_reason
            if reason is not None:
                rest, more, reason = parser.finish(reason)
                text, calls = text + rest, calls + more
            yield dataclasses.replace(delta, text=text, tool_calls=calls, finish_reason=reason)
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
