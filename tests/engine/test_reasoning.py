"""Reasoning models: which checkpoints think, and their answers split into reasoning and content."""

from __future__ import annotations

import asyncio
import json

import pytest

from vlserve.engine.base import Delta, Usage
from vlserve.engine.reasoning import (
    ReasoningSplitter,
    answer_starts_in_reasoning,
    checkpoint_thinks,
    template_thinks,
    with_reasoning,
)

THINKING_TEMPLATE = "{{- '<|im_start|>assistant\\n<think>\\n' }}{# history: content.split('</think>') #}"


def split(pieces: list[str], *, opened: bool) -> tuple[str, str]:
    """Reasoning and content of an answer streamed as ``pieces``, each checked to show no marker."""
    splitter = ReasoningSplitter(opened=opened)
    reasoning, content = [], []
    for piece in pieces:
        r, c = splitter.push(piece)
        reasoning.append(r)
        content.append(c)
    r, c = splitter.finish()
    reasoning.append(r)
    content.append(c)
    for released in reasoning + content:
        assert "<think>" not in released and "</think>" not in released
    return "".join(reasoning), "".join(content)


def characters(text: str) -> list[str]:
    return list(text)


def test_reasoning_then_answer_after_an_opened_block():
    answer = "The bars show 3 and 5.\nSo 8.\n</think>\n\nThe total is 8."
    assert split([answer], opened=True) == ("The bars show 3 and 5.\nSo 8.", "The total is 8.")


@pytest.mark.parametrize("cut", range(1, 12))
def test_markers_split_across_deltas_never_leak(cut):
    answer = "<think>\nweigh it\n</think>\n\n42"
    pieces = [answer[i : i + cut] for i in range(0, len(answer), cut)]
    assert split(pieces, opened=False) == ("weigh it", "42")
    assert split(characters("weigh it\n</think>\n\n42"), opened=True) == ("weigh it", "42")


def test_an_answer_without_an_opening_tag_is_content_unless_the_prompt_opened_one():
    assert split(["Just the answer."], opened=False) == ("", "Just the answer.")
    assert split(["thinking...</think>answer"], opened=True) == ("thinking...", "answer")
    assert split(["<thin", "king is fun"], opened=False) == ("", "<thinking is fun")


def test_a_repeated_opening_tag_is_dropped():
    assert split(["<think>\n", "hmm</think>ok"], opened=True) == ("hmm", "ok")


def test_no_closing_tag_returns_the_reasoning_so_far_and_no_content():
    assert split(characters("still weighing the bars\n</thi"), opened=True) == ("still weighing the bars\n</thi", "")
    assert split(["  \n"], opened=True) == ("", "")


def test_closing_tag_then_json_answer():
    pieces = ["Need keys a", " and b.", "\n</", "think>", "\n\n", '{"a": 1, ', '"b": 2}']
    reasoning, content = split(pieces, opened=True)
    assert reasoning == "Need keys a and b."
    assert json.loads(content) == {"a": 1, "b": 2}


def test_a_repeated_closing_tag_never_shows():
    assert split(characters("why\n</think>\n</think>\n\nbecause</think>."), opened=True) == ("why", "because.")


def test_whitespace_inside_the_reasoning_is_kept():
    assert split(["one\n\n", "two\n", "</think>x"], opened=True) == ("one\n\ntwo", "x")


async def _collect(deltas: list[Delta], opened: bool) -> list[Delta]:
    async def source():
        for delta in deltas:
            yield delta

    return [d async for d in with_reasoning(source(), opened=opened)]


def test_deltas_carry_reasoning_apart_and_usage_counts_reasoning_tokens():
    deltas = [
        Delta("look", token_ids=(1,)),
        Delta(" closely", token_ids=(2,)),
        Delta("</think>", token_ids=(3,)),
        Delta("\n\n", token_ids=(4,)),
        Delta("red", token_ids=(5,)),
        Delta("", "stop", (6,), Usage(10, 6)),
    ]
    out = asyncio.run(_collect(deltas, opened=True))
    assert "".join(d.reasoning for d in out) == "look closely"
    assert "".join(d.text for d in out) == "red"
    assert out[-1].usage == Usage(10, 6, reasoning_tokens=3)
    assert [d.token_ids for d in out] == [d.token_ids for d in deltas]  # tokens stay where they were


def test_an_answer_cut_off_while_reasoning_has_only_reasoning():
    deltas = [Delta("first ", token_ids=(1,)), Delta("second", "length", (2,), Usage(10, 2))]
    out = asyncio.run(_collect(deltas, opened=True))
    assert "".join(d.reasoning for d in out) == "first second"
    assert "".join(d.text for d in out) == ""
    assert (out[-1].finish_reason, out[-1].usage.reasoning_tokens) == ("length", 2)


def test_prompt_that_opens_a_block():
    assert answer_starts_in_reasoning("<|im_start|>assistant\n<think>\n")
    assert not answer_starts_in_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # enable_thinking off
    assert not answer_starts_in_reasoning("<|im_start|>assistant\n")


def test_only_a_template_and_tokenizer_with_both_markers_think(tmp_path):
    vocabulary = {"<think>", "</think>", "<|im_end|>"}
    assert template_thinks(THINKING_TEMPLATE, vocabulary)
    assert not template_thinks("{{- '<|im_start|>assistant\\n' }}", vocabulary)
    assert not template_thinks(THINKING_TEMPLATE, {"<|im_end|>"})

    assert not checkpoint_thinks(tmp_path)  # no files: not a thinking checkpoint
    added = [{"id": 7, "content": "<think>"}, {"id": 8, "content": "</think>"}]
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": added}))
    (tmp_path / "chat_template.jinja").write_text("{{- '<|im_start|>assistant\\n' }}")
    assert not checkpoint_thinks(tmp_path)
    (tmp_path / "chat_template.jinja").write_text(THINKING_TEMPLATE)
    assert checkpoint_thinks(tmp_path)
