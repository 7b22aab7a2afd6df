"""The response cache over HTTP (fake engine): hits, headers, streams replayed, bypass, coalescing, metrics."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.fakes import image_message
from tests.cache.fakes import CountingEngine
from tests.observability.test_metrics import scrape, value
from tests.security.keyed import new_key, serving
from tests.support.images import data_url, solid

CHAT = "/v1/chat/completions"
HEADER = "x-vlserve-cache"


def chat(text: str = "what is the peak", **extra) -> dict:
    return {"model": "fake-vl", "messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


def without_ids(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k not in ("id", "created")}


def sse(text: str) -> list[dict]:
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


@pytest.fixture
def engine() -> CountingEngine:
    return CountingEngine()


@pytest.fixture
def cached(make_client, engine):
    return make_client(engine)


def test_a_repeated_deterministic_request_is_a_hit_identical_but_for_its_id(cached, engine) -> None:
    first = cached.post(CHAT, json=chat(max_tokens=5))
    second = cached.post(CHAT, json=chat(max_tokens=5))
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers[HEADER], second.headers[HEADER]) == ("miss", "hit")
    assert engine.calls == 1
    assert without_ids(second.json()) == without_ids(first.json())
    assert second.json()["id"] == f"chatcmpl-{second.headers['x-request-id']}" != first.json()["id"]


def test_images_are_part_of_the_key(cached, engine) -> None:
    red, blue = data_url(solid(color=(200, 0, 0))), data_url(solid(color=(0, 0, 200)))
    statuses = [
        cached.post(CHAT, json={"messages": image_message(url), "top_k": 1}).headers[HEADER] for url in (red, blue, red)
    ]
    assert statuses == ["miss", "miss", "hit"] and engine.calls == 2


def test_sampled_requests_are_never_cached_seeded_ones_are(cached, engine) -> None:
    sampled = [cached.post(CHAT, json=chat(temperature=0.9)) for _ in range(2)]
    assert all(HEADER not in r.headers for r in sampled) and engine.calls == 2
    seeded = [cached.post(CHAT, json=chat(temperature=0.9, seed=11)).headers[HEADER] for _ in range(2)]
    assert seeded == ["miss", "hit"] and engine.calls == 3


def test_no_cache_recomputes_and_replaces_no_store_neither_reads_nor_writes(cached, engine) -> None:
    assert cached.post(CHAT, json=chat()).headers[HEADER] == "miss"
    fresh = cached.post(CHAT, json=chat(), headers={"Cache-Control": "no-cache"})
    assert fresh.headers[HEADER] == "bypass" and engine.calls == 2
    assert cached.post(CHAT, json=chat()).headers[HEADER] == "hit"
    untouched = cached.post(CHAT, json=chat("never stored"), headers={"Cache-Control": "max-age=0, no-store"})
    assert untouched.headers[HEADER] == "bypass" and engine.calls == 3
    assert cached.post(CHAT, json=chat("never stored")).headers[HEADER] == "miss" and engine.calls == 4


def test_a_cached_stream_replays_as_the_same_stream(cached, engine) -> None:
    body = chat(stream=True, stream_options={"include_usage": True}, logprobs=False)
    first, second = (cached.post(CHAT, json=body) for _ in range(2))
    assert (first.headers[HEADER], second.headers[HEADER]) == ("miss", "hit") and engine.calls == 1
    assert second.headers["content-type"].startswith("text/event-stream")
    events = sse(second.text)
    assert [without_ids(e) for e in events] == [without_ids(e) for e in sse(first.text)]
    assert len(events) > 3 and events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0
    assert {e["id"] for e in events} == {f"chatcmpl-{second.headers['x-request-id']}"}
    whole = cached.post(CHAT, json=chat())  # a whole answer is cached apart from the stream's chunks
    assert whole.headers[HEADER] == "miss"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert whole.json()["choices"][0]["message"]["content"] == text


def test_concurrent_identical_requests_run_the_engine_once(make_client) -> None:
    engine = CountingEngine(delay_s=0.02)
    client = make_client(engine)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.post(CHAT, json=chat(max_tokens=10)), range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert engine.calls == 1
    assert sorted(r.headers[HEADER] for r in responses) == ["coalesced"] * 7 + ["miss"]
    assert len({json.dumps(without_ids(r.json())) for r in responses}) == 1


def test_errors_are_not_cached(cached, engine) -> None:
    too_long = chat(" ".join(["word"] * 300))
    refused = [cached.post(CHAT, json=too_long) for _ in range(2)]
    assert [r.status_code for r in refused] == [400, 400]
    engine.fail_next = 1
    assert cached.post(CHAT, json=chat()).status_code == 500
    assert [cached.post(CHAT, json=chat()).headers[HEADER] for _ in range(2)] == ["miss", "hit"]


def test_a_hit_gives_back_the_place_held_for_it_and_a_full_engine_refuses_before_reading(cached, engine) -> None:
    assert cached.post(CHAT, json=chat()).status_code == 200
    admission = cached.app.state.vlserve.generation.admission
    engine.max_inflight = 2
    with admission.admit():  # one of the two places taken by a request in progress
        for _ in range(3):
            assert cached.post(CHAT, json=chat()).headers[HEADER] == "hit"
        assert (admission.in_use, admission.held) == (1, 0), "a hit holds no place once answered"
        assert cached.post(CHAT, json=chat("another question")).status_code == 200  # the other place was free
        engine.max_inflight = 1  # every place taken: refused at the edge, before the body is read
        refused = cached.post(CHAT, content=b"{not even json", headers={"Content-Type": "application/json"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"
        assert refused.headers["retry-after"] == "1"
    assert (admission.in_use, admission.held) == (0, 0)


def test_text_completions_are_cached_too(cached, engine) -> None:
    body = {"prompt": "once upon a time", "max_tokens": 3, "temperature": 0, "echo": True}
    first, second = (cached.post("/v1/completions", json=body) for _ in range(2))
    assert (first.headers[HEADER], second.headers[HEADER]) == ("miss", "hit") and engine.calls == 1
    assert without_ids(second.json()) == without_ids(first.json())
    assert second.json()["choices"][0]["text"].startswith("once upon a time")


def test_cache_metrics_and_the_access_log_field(cached, caplog) -> None:
    before = scrape(cached)
    caplog.set_level(logging.INFO, logger="vlserve.access")
    for headers in ({}, {}, {"Cache-Control": "no-store"}):
        cached.post(CHAT, json=chat("counted"), headers=headers)
    cached.post(CHAT, json=chat("counted", temperature=1))
    after = scrape(cached)
    for outcome, moved in (("miss", 1), ("hit", 1), ("bypass", 1), ("coalesced", 0)):
        name = "vlserve_cache_lookups_total"
        assert value(after, name, outcome=outcome) - value(before, name, outcome=outcome) == moved, outcome
    assert value(after, "vlserve_cache_entries") == 1
    assert ("vlserve_redis_up", ()) not in after  # no Redis configured
    fields = [r.access["cache"] for r in caplog.records if getattr(r, "access", {}).get("path") == CHAT]
    assert fields == ["miss", "hit", "bypass", None]
    assert "cache=hit" in [r.getMessage() for r in caplog.records if r.name == "vlserve.access"][1]


def test_entries_are_per_key_unless_shared_and_hits_spend_no_tokens(tmp_path) -> None:
    engine = CountingEngine()
    with serving(tmp_path / "own", engine=engine) as client:
        _, alice = new_key(client, "alice", tokens_per_day=1000)
        _, bob = new_key(client, "bob")
        outcomes = [client.post(CHAT, json=chat(), headers=h).headers[HEADER] for h in (alice, alice, bob)]
        assert outcomes == ["miss", "hit", "miss"] and engine.calls == 2
        spent = client.post(CHAT, json=chat("spend"), headers=alice).headers["x-ratelimit-remaining-tokens"]
        hit = client.post(CHAT, json=chat(), headers=alice)
        assert hit.headers[HEADER] == "hit"
        after = client.post(CHAT, json=chat("spend"), headers=alice)  # a hit itself: shows the count after both
        assert after.headers[HEADER] == "hit"
        assert hit.headers["x-ratelimit-remaining-tokens"] == after.headers["x-ratelimit-remaining-tokens"] != spent
    engine = CountingEngine()
    with serving(tmp_path / "shared", engine=engine, cache_scope="shared") as client:
        (_, alice), (_, bob) = new_key(client, "alice"), new_key(client, "bob")
        outcomes = [client.post(CHAT, json=chat(), headers=h).headers[HEADER] for h in (alice, bob)]
        assert outcomes == ["miss", "hit"] and engine.calls == 1


def test_the_cache_can_be_turned_off(make_client, engine) -> None:
    client = make_client(engine, cache=False)
    responses = [client.post(CHAT, json=chat()) for _ in range(2)]
    assert all(HEADER not in r.headers for r in responses) and engine.calls == 2
    assert value(scrape(client), "vlserve_cache_lookups_total", outcome="miss") == 0


def test_a_browser_page_may_send_cache_control_and_read_the_outcome(make_client) -> None:
    origin = "https://app.example"
    client = make_client(cors_origins=[origin])
    preflight = client.options(
        CHAT, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                       "Access-Control-Request-Headers": "content-type, cache-control"},
    )  # fmt: skip
    assert preflight.status_code == 200
    response = client.post(CHAT, json=chat(), headers={"Origin": origin, "Cache-Control": "no-store"})
    assert response.headers[HEADER] == "bypass"
    assert HEADER in response.headers["access-control-expose-headers"].lower()
