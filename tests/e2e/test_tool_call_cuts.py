"""A tool call cut by the token limit, through the real server: no ``<tool_call>`` markup leaks into the
content, streamed or not; the answer is the partial call OpenAI sends (or nothing before the name is whole)
with ``finish_reason`` ``length``. Arguments are compact JSON, and the streamed pieces add up to them."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"
PLACE = {
    "type": "object",
    "properties": {"city": {"enum": ["Zürich", "Oslo"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": PLACE}}
CLOCK = {"type": "function", "function": {"name": "clock"}}
QUESTION = [{"role": "user", "content": "What is the weather in Zürich?"}]

ONE_CALL = {"tool_choice": "required", "parallel_tool_calls": False, "temperature": 0}


def ask(client, **extra):
    return client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=[WEATHER, CLOCK], **{**ONE_CALL, **extra}
    )


def streamed(client, **extra) -> tuple[str, dict[int, dict], str | None]:
    """(content, calls by index, finish reason) of a streamed answer, assembled as a client does."""
    content, calls, finish = "", {}, None
    for chunk in ask(client, stream=True, **extra):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            content += choice.delta.content or ""
            for piece in choice.delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"id": piece.id, "name": None, "arguments": ""})
                call["name"] = call["name"] or (piece.function.name if piece.function else None)
                call["arguments"] += (piece.function.arguments or "") if piece.function else ""
    return content, calls, finish


def cut_points(choice) -> tuple[int, int, int]:
    """From the whole answer's tokens: how many end the opening tag, end the function's name, and reach into
    the arguments."""
    pieces = [bytes(entry.bytes) for entry in choice.logprobs.content]

    def first(pattern: str) -> int:
        return next(n for n in range(1, len(pieces) + 1) if re.search(pattern, b"".join(pieces[:n]).decode()))

    return first("<tool_call>"), first(r'"name"\s*:\s*"[^"]+"'), first(r'"arguments"\s*:\s*\{\s*"')


def test_a_call_cut_anywhere_leaks_no_markup(openai_client):
    whole = ask(openai_client, max_tokens=200, logprobs=True).choices[0]
    assert whole.finish_reason == "tool_calls"
    (call,) = whole.message.tool_calls
    tag, name, arguments = cut_points(whole)
    for limit in sorted({1, tag, tag + 1, name - 1, name, arguments, arguments + 2}):
        choice = ask(openai_client, max_tokens=limit).choices[0]
        assert choice.finish_reason == "length", limit
        assert not choice.message.content, (limit, choice.message.content)  # none, or empty: never markup
        cut = choice.message.tool_calls or []
        assert len(cut) == (limit >= name), limit  # a call once its name is whole
        if cut:  # the partial call: its id and name, its arguments as far as they were written
            assert cut[0].id.startswith("call_") and cut[0].function.name == call.function.name
            assert call.function.arguments.startswith(cut[0].function.arguments)
            assert bool(cut[0].function.arguments) == (limit >= arguments)
        content, calls, finish = streamed(openai_client, max_tokens=limit)
        assert (content, finish) == ("", "length"), limit
        assert [(c["name"], c["arguments"]) for c in calls.values()] == [
            (c.function.name, c.function.arguments) for c in cut
        ]


def test_arguments_are_compact_json_streamed_or_not(openai_client):
    named = {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "max_tokens": 120}
    (call,) = ask(openai_client, **named).choices[0].message.tool_calls
    arguments = json.loads(call.function.arguments)
    assert call.function.arguments == json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    assert arguments["city"] in ("Zürich", "Oslo")  # non-ASCII stays readable: no \u escapes
    _, calls, finish = streamed(openai_client, **named)
    assert finish == "tool_calls" and [c["arguments"] for c in calls.values()] == [call.function.arguments]
