"""OpenAI and vLLM request conformance through the real server: unknown keys, stream_options rules, usage on
every chunk (vLLM's continuous_usage_stats), variables for the chat template."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"
QUESTION = [{"role": "user", "content": "Describe the chart in one sentence."}]


def test_an_unknown_key_is_a_400_naming_it_through_the_openai_client(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2, extra_body={"foo_bar": 1})
    assert caught.value.body["param"] == "foo_bar"
    assert "Unrecognized request argument supplied: foo_bar" in caught.value.body["message"]


def test_min_p_and_beam_search_are_not_ignored(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=2, extra_body={"use_beam_search": True}
        )
    assert caught.value.body["param"] == "use_beam_search"


def _events(server, body: dict) -> list[dict]:
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120, trust_env=False) as r:
        assert r.status_code == 200, r.read()
        lines = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_continuous_usage_stats_put_the_usage_so_far_on_every_chunk(server):
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 6, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
    events = _events(server, body)
    final = events[-1]["usage"]
    assert final["completion_tokens"] == 6 and final["prompt_tokens"] > 0
    counted = [e["usage"] for e in events[1:] if e["choices"]]  # after the role chunk
    assert counted and all(u["prompt_tokens"] == final["prompt_tokens"] for u in counted)
    completions = [u["completion_tokens"] for u in counted]
    assert completions == sorted(completions) and completions[-1] == 6
    assert all(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] for u in counted)
    plain = _events(server, {**body, "stream_options": {"include_usage": True}})
    assert all("usage" not in e for e in plain if e["choices"]), "only asked for: usage once, at the end"


def test_stream_options_need_a_stream(server):
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 2, "stream_options": {"include_usage": True}}
    r = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60, trust_env=False)
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"
