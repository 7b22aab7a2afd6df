"""The remote engine behind the real app, against scriptable upstreams on loopback ports.

Round-robin over healthy upstreams, retry only before the first token, errors in vlserve's envelope
with no upstream address or key in them, deadlines, inline images, headers passed upstream; tool calls,
logprobs and text completions passed through.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.e2e.server import free_port
from tests.support.images import chart, data_url, encode
from tests.support.openai_stub import CALL, Stub, serve_stubs
from vlserve.app import build_app
from vlserve.engine.remote import RemoteConfig, RemoteEngine
from vlserve.media.resize import ImageBudget
from vlserve.settings import Settings

KEY = "sk-upstream-secret"


@pytest.fixture
def gateway(tmp_path_factory):
    clients: list[TestClient] = []

    def start(*upstreams: Stub | str, ready: bool = True, **config) -> TestClient:
        urls = tuple(u if isinstance(u, str) else u.url for u in upstreams)
        options = {"health_interval": 0.2, "warmup": False, "api_key": KEY, "default_max_tokens": 64, **config}
        engine = RemoteEngine(RemoteConfig(urls, ImageBudget(64 * 1024, 256 * 1024), max_images=8, **options))
        settings = Settings(data_dir=tmp_path_factory.mktemp("data"), url_allowlist="127.0.0.1/32", url_fetch_timeout=2)
        client = TestClient(build_app(settings, engine=engine), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        if ready:
            wait_for(lambda: client.get("/health/ready").status_code == 200)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextlib.contextmanager
def stubs(*names: str) -> Iterator[list[Stub]]:
    with serve_stubs(*names) as started:
        yield started


def ask(client: TestClient, content: str | list = "hello", **extra) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}], **extra})


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def assert_leaks_nothing(response: httpx.Response, *stubs_: Stub) -> None:
    text = response.text
    assert KEY not in text and "127.0.0.1" not in text
    for stub in stubs_:
        assert str(stub.port) not in text


def test_requests_go_round_robin_over_the_healthy_upstreams(gateway):
    with stubs("a", "b") as (a, b):
        client = gateway(a, b)
        names = [answer(ask(client)).split()[-1] for _ in range(4)]
        assert sorted(names) == ["a", "a", "b", "b"] and names[0] != names[1]
        assert client.get("/v1/models").json()["data"][0]["id"] == "stub-model"


def test_an_unhealthy_upstream_is_skipped_and_readiness_needs_one_healthy(gateway):
    with stubs("sick", "well") as (sick, well):
        sick.behaviour = "unhealthy"
        client = gateway(sick, well)
        assert {answer(ask(client)).split()[-1] for _ in range(3)} == {"well"}
        assert sick.requests == []
        well.behaviour = "unhealthy"
        wait_for(lambda: client.get("/health/ready").status_code == 503)
        ready = client.get("/health/ready").json()
        assert ready["detail"] == "no upstream engine is healthy"
        refused = ask(client)
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        well.behaviour = "ok"
        wait_for(lambda: client.get("/health/ready").status_code == 200)
        assert answer(ask(client)).endswith("well")


def test_a_failure_before_the_first_token_is_retried_on_another_upstream(gateway):
    with stubs("broken", "fine") as (broken, fine):
        broken.behaviour = "500"
        client = gateway(broken, fine)
        assert [answer(ask(client)).split()[-1] for _ in range(2)] == ["fine", "fine"]
        assert len(broken.requests) == 1  # tried once, then the other upstream answered


def test_an_upstream_that_stops_answering_is_marked_down_and_the_request_goes_elsewhere(gateway):
    with stubs("gone", "here") as (gone, here):
        client = gateway(gone, here, health_interval=60)  # no probe will notice in time: the request must
        gone.stop()
        assert [answer(ask(client)).split()[-1] for _ in range(3)] == ["here"] * 3
        assert client.get("/health/ready").status_code == 200


def test_when_every_upstream_fails_the_client_gets_502_or_429_without_addresses(gateway):
    with stubs("a", "b") as (a, b):
        a.behaviour = b.behaviour = "500"
        client = gateway(a, b)
        failed = ask(client)
        assert failed.status_code == 502 and failed.headers["Retry-After"]
        assert failed.json()["error"]["code"] == "upstream_error"
        assert_leaks_nothing(failed, a, b)
        a.behaviour = b.behaviour = "429"
        busy = ask(client)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "7"


def test_an_upstream_4xx_keeps_its_status_with_addresses_and_key_scrubbed(gateway):
    with stubs("strict") as (strict,):
        strict.behaviour = "400"
        client = gateway(strict)
        refused = ask(client)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert (error["param"], error["code"]) == ("messages", "context_too_long")
        assert error["message"].startswith("bad request at <upstream>")
        assert_leaks_nothing(refused, strict)
        assert len(strict.requests) == 1  # a client error is not retried


def test_a_stream_broken_after_the_first_token_is_not_retried(gateway):
    with stubs("flaky", "other") as (flaky, other):
        flaky.behaviour = "break"
        client = gateway(flaky, other)
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        endings = []
        for _ in range(2):  # round-robin: one request meets each upstream
            with client.stream("POST", "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200  # the first token was sent: the answer has started
                events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
            text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e.get("choices"))
            endings.append((text, events[-1].get("error", {}).get("code")))
        assert sorted(endings) == [("a", "upstream_error"), ("a stub answer from other", None)]
        assert (len(flaky.requests), len(other.requests)) == (1, 1)  # the broken one was not retried


def test_no_first_token_in_time_is_a_504_and_so_is_a_whole_answer_too_late(gateway):
    with stubs("slow") as (slow,):
        slow.behaviour, slow.delay = "slow", 3
        client = gateway(slow, first_token_timeout=0.5, timeout=1.0)
        started = time.monotonic()
        with client.stream("POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                                  "stream": True}) as late:  # fmt: skip
            assert late.status_code == 504 and json.loads(late.read())["error"]["code"] == "upstream_timeout"
        assert time.monotonic() - started < 1.0  # the first-token deadline, not the total one
        whole = ask(client)  # not streamed: only the total deadline applies
        assert whole.status_code == 504 and whole.json()["error"]["code"] == "upstream_timeout"


def test_a_whole_answer_is_streamed_from_the_upstream_so_that_its_progress_shows(gateway):
    with stubs("plain") as (plain,):
        client = gateway(plain)
        reply = ask(client, max_tokens=3)
        assert answer(reply) == "a stub answer" and reply.json()["usage"]["completion_tokens"] == 3
        sent = plain.requests[-1]
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_the_in_flight_limit_answers_429(gateway):
    with stubs("slow") as (slow,):
        slow.behaviour, slow.delay = "slow", 1.0
        client = gateway(slow, max_inflight=1)
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(r.status_code for r in pool.map(lambda _: ask(client), range(2)))
        assert statuses == [200, 429]


def test_images_reach_the_upstream_inline_and_resized_never_as_urls(gateway, image_host):
    with stubs("eyes") as (eyes,):
        client = gateway(eyes)
        big = data_url(encode(chart(1, (1000, 700))))
        fits = data_url(encode(chart(2, (640, 384))))  # already on the 32 px grid, within the budget
        content = [
            {"type": "image_url", "image_url": {"url": big}},
            {"type": "image_url", "image_url": {"url": f"{image_host.url}/chart.png"}},
            {"type": "image_url", "image_url": {"url": fits}},
            {"type": "text", "text": "compare"},
        ]
        reply = ask(client, content, max_tokens=3, presence_penalty=1.5)
        assert reply.status_code == 200, reply.text
        sent = eyes.requests[-1]
        urls = [p["image_url"]["url"] for p in sent["messages"][0]["content"] if p["type"] == "image_url"]
        assert all(u.startswith("data:image/png;base64,") for u in urls)
        sizes = [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).size for u in urls]
        assert sizes == [(608, 416), (320, 256), (640, 384)]  # each resized once into the 64-256 token budget
        assert urls[2] == fits  # nothing to resize: the client's own bytes, not re-encoded
        assert sent["max_completion_tokens"] == 3 and "max_tokens" not in sent  # max_tokens is deprecated on chat
        assert sent["presence_penalty"] == 1.5 and sent["model"] == "stub-model"
        assert sent["chat_template_kwargs"] == {"add_vision_id": True}  # three pictures: "Picture 1:", …


def test_trace_id_and_key_go_upstream(gateway):
    with stubs("ears") as (ears,):
        client = gateway(ears)
        reply = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Request-Id": "trace-123"},
        )  # fmt: skip
        assert reply.status_code == 200 and reply.headers["X-Request-Id"] == "trace-123"
        assert ears.headers[-1]["x-request-id"] == "trace-123"
        assert ears.headers[-1]["authorization"] == f"Bearer {KEY}"
        assert ears.requests[-1]["max_completion_tokens"] == 64  # the server's default limit, as with every engine


def test_a_peer_without_health_is_checked_on_its_model_list(gateway):
    with stubs("old") as (old,):
        old.behaviour = "no-health"
        assert answer(ask(gateway(old))).endswith("old")


def test_structured_output_goes_upstream_and_the_answer_is_still_validated(gateway):
    with stubs("json") as (stub,):
        client = gateway(stub)
        schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
        reply = ask(client, guided_json=schema)  # vLLM's legacy field, translated
        sent = stub.requests[-1]["response_format"]
        assert sent == {"type": "json_schema", "json_schema": {"name": "guided_json", "schema": schema, "strict": True}}
        assert reply.status_code == 500 and reply.json()["error"]["code"] == "invalid_model_output"  # not JSON
        assert ask(client, guided_regex="[a-z]+").status_code == 400


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
HISTORY = [
    {"role": "user", "content": "weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'}},
    ]},
    {"role": "tool", "tool_call_id": "call_0", "content": "rain"},
    {"role": "user", "content": "and in Paris?"},
]  # fmt: skip


def test_tool_calls_go_upstream_and_come_back_whole_and_streamed(gateway):
    with stubs("caller") as (caller,):
        caller.behaviour = "tools"
        client = gateway(caller)
        body = {"messages": HISTORY, "tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False}
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        choice = reply.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["tool_calls"] == [CALL]
        sent = caller.requests[-1]
        assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False
        assert sent["messages"][1:3] == HISTORY[1:3]  # the earlier call and its answer, as the client sent them

        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        pieces = [p for e in events for p in e["choices"][0]["delta"].get("tool_calls", [])]
        assert pieces[0]["id"] == "call_stub" and pieces[0]["function"]["name"] == "lookup"
        assert "".join(p["function"]["arguments"] for p in pieces) == '{"city": "Paris"}'
        assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_logprobs_go_upstream_and_come_back(gateway):
    with stubs("sure") as (sure,):
        client = gateway(sure)
        reply = ask(client, logprobs=True, top_logprobs=2)
        assert reply.status_code == 200, reply.text
        assert (sure.requests[-1]["logprobs"], sure.requests[-1]["top_logprobs"]) == (True, 2)
        content = reply.json()["choices"][0]["logprobs"]["content"]
        assert [e["token"] for e in content] == ["a", " stub", " answer", " from", " sure"]
        assert content[1]["logprob"] == -0.2 and [t["token"] for t in content[1]["top_logprobs"]] == [" stub", "?"]


def test_a_text_completion_goes_to_the_upstreams_completions_endpoint(gateway):
    with stubs("plain") as (plain,):
        client = gateway(plain)
        reply = client.post("/v1/completions", json={"prompt": "Once upon", "max_tokens": 3, "logprobs": 1})
        assert reply.status_code == 200, reply.text
        assert plain.paths[-1] == "/v1/completions"
        sent = plain.requests[-1]
        assert sent["prompt"] == "Once upon" and sent["logprobs"] == 1 and "messages" not in sent
        assert sent["max_tokens"] == 3 and "max_completion_tokens" not in sent  # a completion's only limit field
        choice = reply.json()["choices"][0]
        assert (choice["text"], choice["finish_reason"]) == ("a stub answer", "length")
        legacy = choice["logprobs"]
        assert legacy["tokens"] == ["a", " stub", " answer"] and legacy["text_offset"] == [0, 1, 6]
        assert legacy["top_logprobs"][0] == {"a": -0.1, "?": pytest.approx(-1.1)}

        body = {"prompt": "Once upon", "stream": True, "echo": True, "stream_options": {"include_usage": True}}
        with client.stream("POST", "/v1/completions", json=body) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        assert plain.requests[-1]["stream"] is True and "echo" not in plain.requests[-1]  # echoed by vlserve
        text = "".join(e["choices"][0]["text"] for e in events if e["choices"])
        assert text == "Once upona stub answer from plain"
        assert events[-1]["usage"] == {"prompt_tokens": 42, "completion_tokens": 5, "total_tokens": 47}


def test_no_reachable_upstream_means_not_ready_and_503(gateway):
    client = gateway(f"http://127.0.0.1:{free_port()}", ready=False)
    time.sleep(0.5)
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["detail"] == "no upstream engine is healthy"
    refused = ask(client)
    assert refused.status_code == 503 and "127.0.0.1" not in refused.text


def test_structured_outputs_go_upstream_in_vllms_form_and_json_kinds_as_a_response_format(gateway):
    tag = {"type": "structural_tag", "format": {"type": "const_string", "value": "<ok/>"}}
    with stubs("formats") as (stub,):
        client = gateway(stub)
        for value, sent in [({"regex": "[0-9]{3}"}, {"regex": "[0-9]{3}"}),
                            ({"choice": ["yes", "no"]}, {"choice": ["yes", "no"]}),
                            ({"grammar": 'root ::= "a"'}, {"grammar": 'root ::= "a"'})]:  # fmt: skip
            assert ask(client, structured_outputs=value).status_code == 200
            assert stub.requests[-1]["structured_outputs"] == sent and "response_format" not in stub.requests[-1]
        assert ask(client, structured_outputs={"structural_tag": tag}).status_code == 200
        assert json.loads(stub.requests[-1]["structured_outputs"]["structural_tag"]) == tag  # vLLM takes its JSON text
        schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
        ask(client, structured_outputs={"json": schema})
        assert "structured_outputs" not in stub.requests[-1]  # what any OpenAI-compatible upstream takes
        assert stub.requests[-1]["response_format"]["json_schema"]["schema"] == schema
        reply = client.post("/v1/completions", json={"prompt": "Once", "structured_outputs": {"choice": ["a", "b"]}})
        assert reply.status_code == 200 and stub.requests[-1]["structured_outputs"] == {"choice": ["a", "b"]}
