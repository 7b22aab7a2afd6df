"""Logprobs and per-request sampling parameters through the real server and the official openai client."""

from __future__ import annotations

import math

import httpx
import pytest

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"
QUESTION = [{"role": "user", "content": "Describe the chart in one sentence."}]


def ask(client, **extra):
    return client.chat.completions.create(
        model=MODEL, messages=QUESTION, **{"max_tokens": 12, "temperature": 0, **extra}
    )


def test_logprobs_one_per_token_with_sorted_alternatives(openai_client):
    answer = ask(openai_client, logprobs=True, top_logprobs=3, extra_body={"return_token_ids": True})
    choice = answer.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == answer.usage.completion_tokens == len(choice.model_extra["token_ids"])
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        values = [t.logprob for t in entry.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert entry.token == entry.top_logprobs[0].token  # greedy picks the most likely token
        assert math.isclose(entry.logprob, values[0], abs_tol=1e-4)
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
    text = [e for e in entries if not (e.token.startswith("<|") and e.token.endswith("|>"))]  # special tokens
    assert bytes(b for e in text for b in e.bytes).decode("utf-8", "replace") == choice.message.content


def test_streamed_logprobs_equal_the_whole_answer(openai_client):
    whole = ask(openai_client, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    streamed = [
        entry
        for chunk in ask(openai_client, logprobs=True, top_logprobs=2, stream=True)
        for choice in chunk.choices
        if choice.logprobs is not None
        for entry in choice.logprobs.content
    ]
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in whole]


def test_no_logprobs_unless_asked(openai_client):
    assert ask(openai_client).choices[0].logprobs is None


def test_ignore_eos_runs_to_max_tokens_and_logit_bias_forces_a_token(openai_client):
    assert ask(openai_client, max_tokens=20, extra_body={"ignore_eos": True}).usage.completion_tokens == 20
    forced = ask(openai_client, logit_bias={"300": 100}, extra_body={"return_token_ids": True})
    assert set(forced.choices[0].model_extra["token_ids"]) == {300}


def test_penalties_change_a_repetitive_greedy_answer(openai_client):
    def tokens(**extra):
        return (
            ask(openai_client, max_tokens=40, extra_body={"return_token_ids": True, **extra})
            .choices[0]
            .model_extra["token_ids"]
        )

    plain = tokens()
    assert len(set(plain)) < len(plain)  # random weights repeat themselves
    for penalty in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0}, {"repetition_penalty": 2.0}):
        penalised = tokens(**penalty)
        assert penalised != plain, penalty
        assert len(set(penalised)) >= len(set(plain)), penalty


def test_a_logit_bias_outside_the_vocabulary_is_refused(server):
    body = {"messages": QUESTION, "max_tokens": 2, "logit_bias": {"99999999": 5}}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "logit_bias" and "vocabulary" in response.json()["error"]["message"]
