"""A thinking checkpoint on the transformers engine: its reasoning apart from its answer, the answer's format
and tool calls enforced after ``</think>``, and ``chat_template_kwargs`` reaching the template.

Random weights never close their reasoning by themselves; a ``logit_bias`` on ``</think>`` just large enough
to make it win at one position (:func:`closing_bias`) makes the greedy answer reason for ``k`` tokens, then
close the block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import jsonschema
import pytest

from tests.engine.running import RunningEngine, forward_logits, token_ids
from tests.support.thinking_model import build_thinking_model, closing_bias
from vlserve.engine.base import GREEDY, ChatTurn, Delta, EngineRequest
from vlserve.engine.reasoning import checkpoint_thinks
from vlserve.engine.transformers.prompting import Prompt
from vlserve.structured import OutputFormat

QUESTION = "What is the total?"
TOTAL = {"type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def thinking_model(demo_model, tmp_path_factory):
    return build_thinking_model(demo_model, tmp_path_factory.mktemp("models") / "vlserve-demo-thinking")


@pytest.fixture(scope="module")
def running(thinking_model):
    engine = RunningEngine(thinking_model)
    yield engine
    engine.close()


@dataclass(frozen=True)
class Closing:
    prompt: Prompt
    marker: int  # the id of </think>
    bias: float
    k: int  # reasoning tokens before </think> under the bias
    unbiased: list[Delta]


def closing_for(running: RunningEngine, prompt: Prompt) -> Closing:
    marker = running.engine._builder._tokenizer.convert_tokens_to_ids("</think>")
    unbiased = running.answer(prompt, replace(GREEDY, max_tokens=30))
    generated = token_ids(unbiased)
    bias, k = closing_bias(forward_logits(running.engine._checkpoint.model, prompt, generated), generated, marker)
    return Closing(prompt, marker, bias, k, unbiased)


@pytest.fixture(scope="module")
def closing(running) -> Closing:
    return closing_for(running, running.prompt(QUESTION))


def text(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def reasoning(deltas: list[Delta]) -> str:
    return "".join(d.reasoning for d in deltas)


def test_only_a_checkpoint_that_thinks_is_detected(demo_model, thinking_model, closing):
    assert not checkpoint_thinks(demo_model)
    assert checkpoint_thinks(thinking_model)
    assert closing.prompt.reasoning == "opened"  # the template's generation prompt opened <think>


def test_an_answer_cut_off_while_reasoning_is_all_reasoning(closing):
    last = closing.unbiased[-1]
    assert (last.finish_reason, text(closing.unbiased)) == ("length", "")
    assert reasoning(closing.unbiased).strip()
    assert last.usage.reasoning_tokens == last.usage.completion_tokens == 30


def test_reasoning_then_the_answer_without_the_marker(running, closing):
    deltas = running.answer(closing.prompt, replace(GREEDY, max_tokens=20, logit_bias={closing.marker: closing.bias}))
    generated = token_ids(deltas)
    assert generated[: closing.k] == token_ids(closing.unbiased)[: closing.k]  # the same reasoning, then it closes
    assert generated[closing.k] == closing.marker
    before = running.engine._runner.decode(generated[: closing.k])
    after = running.engine._runner.decode(generated[closing.k + 1 :])
    assert reasoning(deltas) == before.strip()
    assert text(deltas) == after.replace("</think>", "").lstrip()  # biased, it closes again and again: dropped
    assert deltas[-1].usage.reasoning_tokens == closing.k + 1  # its reasoning and the closing marker


def test_a_json_answer_is_enforced_after_the_reasoning(running, closing):
    params = replace(
        GREEDY, max_tokens=40, logit_bias={closing.marker: closing.bias}, output=OutputFormat.of("total", TOTAL)
    )
    deltas = running.answer(closing.prompt, params)
    assert deltas[-1].finish_reason == "stop"
    assert reasoning(deltas).strip()  # the model reasoned freely first
    jsonschema.validate(json.loads(text(deltas)), TOTAL)


def test_tool_calls_are_read_after_the_reasoning(running):
    request = EngineRequest(
        (ChatTurn.user(QUESTION),), tools=(WEATHER,), tool_choice="required", parallel_tool_calls=False
    )
    closing = closing_for(running, running._loop.run_until_complete(running.engine.prepare(request)))
    params = replace(GREEDY, max_tokens=120, logit_bias={closing.marker: closing.bias})
    deltas = running.answer(closing.prompt, params)
    assert deltas[-1].finish_reason == "tool_calls"
    assert reasoning(deltas).strip()
    calls = [piece for d in deltas for piece in d.tool_calls]
    assert calls[0].name == "get_weather"
    assert json.loads("".join(piece.arguments for piece in calls))["city"] in ("Paris", "Oslo")
    assert "<tool_call>" not in text(deltas) and "</think>" not in text(deltas)


def test_enable_thinking_false_reaches_the_template_and_the_answer_is_all_content(running):
    request = EngineRequest((ChatTurn.user(QUESTION),), chat_template_kwargs={"enable_thinking": False})
    prompt = running._loop.run_until_complete(running.engine.prepare(request))
    assert prompt.reasoning == "optional"  # the template closed an empty block: the model may open its own
    deltas = running.answer(prompt, replace(GREEDY, max_tokens=8))
    assert reasoning(deltas) == ""
    assert text(deltas)
    assert deltas[-1].usage.reasoning_tokens == 0
