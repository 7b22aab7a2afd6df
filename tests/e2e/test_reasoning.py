"""A thinking checkpoint through the real server and the official openai client: the reasoning comes apart
from the answer (``reasoning_content`` and ``reasoning``), whole and streamed, the usage counts it, a JSON
answer is enforced after it, and ``chat_template_kwargs`` turns it off."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from openai import OpenAI

from tests.e2e.server import FAST_IMAGES, ServerProcess
from tests.engine.running import RunningEngine, forward_logits, token_ids
from tests.support.thinking_model import build_thinking_model, closing_bias
from vlserve.engine.base import GREEDY

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-thinking"
QUESTION = [{"role": "user", "content": "What is the total?"}]
TOTAL = {"type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]}


@pytest.fixture(scope="module")
def thinking_model(demo_model, tmp_path_factory):
    return build_thinking_model(demo_model, tmp_path_factory.mktemp("models") / MODEL)


@pytest.fixture(scope="module")
def bias(thinking_model) -> dict[str, float]:
    """The logit_bias on </think> that makes the greedy answer to QUESTION close its reasoning after a few tokens."""
    running = RunningEngine(thinking_model)
    try:
        prompt = running.prompt(QUESTION[0]["content"])
        marker = running.engine._builder._tokenizer.convert_tokens_to_ids("</think>")
        generated = token_ids(running.answer(prompt, replace(GREEDY, max_tokens=30)))
        value, _ = closing_bias(forward_logits(running.engine._checkpoint.model, prompt, generated), generated, marker)
    finally:
        running.close()
    return {str(marker): value}


@pytest.fixture(scope="module")
def client(thinking_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    server = ServerProcess(thinking_model, log, data_dir=tmp_path_factory.mktemp("data"), cache=False, **FAST_IMAGES)
    try:
        server.wait_ready()
        yield OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    finally:
        server.stop()


def ask(client, **extra):
    return client.chat.completions.create(model=MODEL, messages=QUESTION, **{"temperature": 0, **extra})


def test_reasoning_and_answer_come_apart(client, bias):
    response = ask(client, max_tokens=30, logit_bias=bias)
    message = response.choices[0].message.model_dump()
    assert message["reasoning_content"] and message["reasoning"] == message["reasoning_content"]
    assert "</think>" not in message["reasoning"] + (message["content"] or "")
    details = response.usage.completion_tokens_details
    assert 0 < details.reasoning_tokens < response.usage.completion_tokens


def test_an_answer_cut_off_while_reasoning_has_no_content(client):
    response = ask(client, max_tokens=6)
    choice = response.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content is None
    assert choice.message.model_dump()["reasoning_content"]
    assert response.usage.completion_tokens_details.reasoning_tokens == 6


def test_streamed_reasoning_then_content(client, bias):
    whole = ask(client, max_tokens=30, logit_bias=bias).choices[0].message.model_dump()
    reasoning, content, usage = [], [], None
    stream = ask(client, max_tokens=30, logit_bias=bias, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            if delta.get("reasoning_content"):
                assert delta["reasoning"] == delta["reasoning_content"]
                assert not content  # all the reasoning comes first
                reasoning.append(delta["reasoning_content"])
            if delta.get("content"):
                content.append(delta["content"])
    assert "".join(reasoning) == whole["reasoning_content"]
    assert "".join(content) == (whole["content"] or "")
    assert usage.completion_tokens_details.reasoning_tokens > 0


def test_a_json_answer_follows_the_reasoning(client, bias):
    response_format = {"type": "json_schema", "json_schema": {"name": "total", "schema": TOTAL}}
    choice = ask(client, max_tokens=60, logit_bias=bias, response_format=response_format).choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.model_dump()["reasoning_content"]
    assert isinstance(json.loads(choice.message.content)["total"], int)


def test_enable_thinking_false_answers_without_reasoning(client):
    response = ask(client, max_tokens=6, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    message = response.choices[0].message.model_dump()
    assert message["content"] and not message.get("reasoning_content")
    assert response.usage.completion_tokens_details.reasoning_tokens == 0
