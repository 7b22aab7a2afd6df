"""The response cache on a real server, through the official openai client: a repeated deterministic request
is answered from the cache (``x-vlserve-cache: hit``) with the same content, streamed or not."""

from __future__ import annotations

import uuid

import pytest

from tests.support.images import chart_url

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"


def messages() -> list[dict]:
    text = f"What values? ({uuid.uuid4().hex[:8]})"  # a question no other test asked: the first is a miss
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": chart_url(6)}},
                                         {"type": "text", "text": text}]}]  # fmt: skip


def test_a_repeated_greedy_request_is_a_hit_with_the_same_answer(openai_client):
    question = messages()
    raw = [
        openai_client.chat.completions.with_raw_response.create(
            model=MODEL, messages=question, max_tokens=12, temperature=0
        )
        for _ in range(2)
    ]
    assert [r.headers["x-vlserve-cache"] for r in raw] == ["miss", "hit"]
    first, second = (r.parse() for r in raw)
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage == first.usage and second.id != first.id


def test_a_repeated_stream_replays_chunk_for_chunk(openai_client):
    question = messages()
    runs = []
    for _ in range(2):
        raw = openai_client.chat.completions.with_raw_response.create(
            model=MODEL, messages=question, max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        runs.append((raw.headers["x-vlserve-cache"], list(raw.parse())))
    (miss, fresh), (hit, replayed) = runs
    assert (miss, hit) == ("miss", "hit")
    assert [c.choices[0].delta.content if c.choices else None for c in replayed] == [
        c.choices[0].delta.content if c.choices else None for c in fresh
    ]
    assert replayed[-1].usage == fresh[-1].usage and replayed[-1].usage.completion_tokens > 0
