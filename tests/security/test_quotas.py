"""Per-key limits as a client meets them: the real app over a fake engine (429 envelope, Retry-After and
x-ratelimit-* headers), and QuotaMiddleware driven directly (a stream holds its slot until it ends)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis.asyncio as redis
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from tests.api.fakes import FakeEngine
from tests.e2e.server import free_port
from tests.support.images import solid
from tests.support.redis_store import REDIS_URL, redis_prefix
from vlserve.app import build_app
from vlserve.engine.base import ChatTurn, EngineRequest, ToolCall, Usage
from vlserve.engine.remote.engine import RemotePrompt
from vlserve.observability.accounting import RequestRecord, current_record, note_usage
from vlserve.security.principal import Principal
from vlserve.security.quotas import QuotaMiddleware
from vlserve.security.ratelimit import LocalLimiter
from vlserve.security.ratelimit_redis import RedisLimiter
from vlserve.settings import Settings

CHAT = {"model": "fake-vl", "messages": [{"role": "user", "content": "how many bars are there"}], "max_tokens": 4}


@pytest.fixture
def make_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(engine: FakeEngine | None = None, **settings: object) -> TestClient:
        settings = {"data_dir": tmp_path_factory.mktemp("data"), "require_auth": True, **settings}
        client = TestClient(
            build_app(Settings(**settings), engine=engine or FakeEngine()), raise_server_exceptions=False
        )
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def new_key(client: TestClient, name: str, **limits: int) -> dict[str, str]:
    _, secret = client.app.state.vlserve.keys.create(name, **limits)
    return {"Authorization": f"Bearer {secret}"}


def test_the_fourth_request_in_a_minute_is_refused_and_another_key_is_not(make_app) -> None:
    client = make_app()
    limited, other = new_key(client, "limited", requests_per_minute=3), new_key(client, "other")
    remaining = []
    for _ in range(3):
        r = client.get("/v1/models", headers=limited)
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(r.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]

    r = client.post("/v1/chat/completions", json=CHAT, headers=limited)
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert error["param"] is None and "3 requests per minute" in error["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-request-id"]

    r = client.post("/v1/chat/completions", json=CHAT, headers=other)
    assert r.status_code == 200
    assert not any(name.startswith("x-ratelimit") for name in r.headers)  # a key without limits


def test_tokens_per_day_stop_new_work_but_not_reads(make_app) -> None:
    client = make_app()
    key = new_key(client, "small budget", tokens_per_day=10, requests_per_minute=100)
    r = client.post("/v1/chat/completions", json=CHAT, headers=key)
    assert r.status_code == 200
    assert r.headers["x-ratelimit-limit-tokens"] == "10"
    assert r.headers["x-ratelimit-remaining-tokens"] == "10"  # counted when the response has ended
    assert r.headers["x-ratelimit-reset-tokens"].endswith("s")
    used = r.json()["usage"]["total_tokens"]
    assert used > 0

    r = client.post("/v1/chat/completions", json=CHAT, headers=key)  # the one that crosses the budget
    assert r.status_code == 200
    assert r.headers["x-ratelimit-remaining-tokens"] == str(max(0, 10 - used))

    for body in (CHAT, {**CHAT, "stream": True}):  # a stream is refused by its status, before any event
        r = client.post("/v1/chat/completions", json=body, headers=key)
        assert r.status_code == 429, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert "tokens for today" in r.json()["error"]["message"]
        assert r.headers["x-ratelimit-remaining-tokens"] == "0"
        assert 0 < int(r.headers["Retry-After"]) <= 86400

    r = client.get("/v1/models", headers=key)  # reading is not spending
    assert r.status_code == 200 and r.headers["x-ratelimit-remaining-tokens"] == "0"


def test_the_servers_default_limits_apply_to_keys_without_their_own(make_app) -> None:
    client = make_app(default_requests_per_minute=1)
    default, own = new_key(client, "default"), new_key(client, "own", requests_per_minute=0)
    assert client.get("/v1/models", headers=default).status_code == 200
    assert client.get("/v1/models", headers=default).status_code == 429
    assert [client.get("/v1/models", headers=own).status_code for _ in range(3)] == [200, 200, 200]


def test_without_auth_nothing_is_limited(make_app) -> None:
    client = make_app(require_auth=False, default_requests_per_minute=1)
    for _ in range(3):
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200
        assert "x-ratelimit-limit-requests" not in r.headers


def test_redis_lost_refuses_limited_keys_with_503_and_serves_the_others(make_app) -> None:
    client = make_app()
    limited, unlimited = new_key(client, "limited", concurrent_requests=4), new_key(client, "unlimited")
    runtime = client.app.state.vlserve
    gone = redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)  # nothing listens
    runtime.limiter = RedisLimiter(gone)

    r = client.post("/v1/chat/completions", json=CHAT, headers=limited)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "rate_limits_unavailable"
    assert "Redis" in r.json()["error"]["message"] and r.headers["Retry-After"] == "5"
    assert client.post("/v1/chat/completions", json=CHAT, headers=unlimited).status_code == 200


def test_document_pages_spend_the_owners_tokens_and_fail_once_they_are_spent(make_app) -> None:
    client = make_app(document_concurrency=1, document_poll_s=0.05, document_max_tokens=64)  # a page at a time
    key = new_key(client, "documents", tokens_per_day=1)
    files = [("file", (f"{name}.png", solid((120, 90)), "image/png")) for name in ("a", "b")]
    r = client.post("/v1/documents", files=files, headers=key)
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    deadline = time.monotonic() + 30
    while (status := client.get(f"/v1/documents/{job}", headers=key).json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["pages"]["succeeded"] == 1 and status["pages"]["failed"] == 1, status  # page 1 spent the day's tokens
    [error] = status["errors"]
    assert error["page"] == 2 and "1 tokens for today" in error["error"] and "00:00 UTC" in error["error"]

    r = client.post("/v1/chat/completions", json=CHAT, headers=key)  # the pages were charged to the key
    assert r.status_code == 429 and "tokens for today" in r.json()["error"]["message"]
    assert client.get(f"/v1/documents/{job}/result", headers=key).status_code == 200  # results stay readable


# --- tokens per day under concurrency: each generation reserves its worst case first ---------------------------


class GatedEngine(FakeEngine):
    """Holds every generation until the gate opens (at most ``hold_s``), so that requests really overlap."""

    def __init__(self, hold_s: float = 30.0) -> None:
        super().__init__()
        self.entered = 0
        self.prompt_tokens = 0  # the longest prompt generated
        self.gate = threading.Event()
        self.hold_s = hold_s

    async def generate(self, prepared, params):
        self.entered += 1
        self.prompt_tokens = max(self.prompt_tokens, prepared.num_tokens)
        deadline = time.monotonic() + self.hold_s
        while not self.gate.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        async for delta in super().generate(prepared, params):
            yield delta


@pytest.fixture(params=["local", "redis"])
def limiter_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
    if request.param == "local":
        yield {}
    else:
        prefix = redis_prefix()
        yield {"redis_url": REDIS_URL, "redis_prefix": next(prefix)}
        next(prefix, None)


def test_concurrent_chats_cannot_multiply_the_tokens_per_day(make_app, limiter_settings) -> None:
    """10 chats at once on a 100-token key, each able to use 20 prompt + 60 completion tokens: the first two
    reserve 80 each (the second while 80 < 100 are reserved), the other eight are refused before any work."""
    engine = GatedEngine()
    client = make_app(engine, **limiter_settings)
    key = new_key(client, "small budget", tokens_per_day=100)
    words = " ".join(f"w{n}" for n in range(19))

    def ask(n: int):
        body = {"messages": [{"role": "user", "content": f"q{n} {words}"}], "max_tokens": 60}
        return client.post("/v1/chat/completions", json=body, headers=key)

    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(ask, n) for n in range(10)]
        deadline = time.monotonic() + 30
        while engine.entered + sum(f.done() for f in futures) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)  # until every request runs in the engine or has been answered
        engine.gate.set()
        responses = [f.result() for f in futures]

    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    spent = sum(r.json()["usage"]["total_tokens"] for r in served)
    assert len(served) == 2 and engine.entered == 2, [r.status_code for r in responses]
    assert spent <= 100 + 80  # the budget, and at most one reservation over it
    for r in refused:
        assert r.status_code == 429, r.text
        error = r.json()["error"]
        assert (error["code"], error["type"]) == ("rate_limit_exceeded", "rate_limit_error")
        assert "100 tokens for today" in error["message"] and "reserved by its requests in progress" in error["message"]
        assert r.headers["Retry-After"] == "1" and r.headers["x-ratelimit-remaining-tokens"] == "0"

    r = client.get("/v1/models", headers=key)  # settled: the real tokens counted, nothing left reserved
    assert r.headers["x-ratelimit-remaining-tokens"] == str(100 - spent)


def test_document_pages_read_at_once_cannot_multiply_the_owners_tokens(make_app) -> None:
    """Four pages in flight at once on a 60-token key: the first reserves its worst case (over the budget), the
    others wait for it (put back) and then fail, the budget spent; overspent by at most that one reservation."""
    engine = GatedEngine(hold_s=1.0)  # long enough for the other pages to be claimed meanwhile
    client = make_app(engine, document_concurrency=4, document_poll_s=0.05, document_max_tokens=64)
    key = new_key(client, "documents", tokens_per_day=60)
    files = [("file", (f"{n}.png", solid((120, 90)), "image/png")) for n in range(6)]
    r = client.post("/v1/documents", files=files, headers=key)
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    deadline = time.monotonic() + 60
    while (status := client.get(f"/v1/documents/{job}", headers=key).json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["pages"]["succeeded"] == 1 and status["pages"]["failed"] == 5, status
    assert all("60 tokens for today" in e["error"] for e in status["errors"]), status["errors"]

    r = client.post("/v1/chat/completions", json=CHAT, headers=key)
    assert r.status_code == 429
    spent = int(re.search(r"\((\d+) used\)", r.json()["error"]["message"]).group(1))
    assert 60 <= spent <= 60 + engine.prompt_tokens + 64  # the budget, and at most one page's reservation over it


def test_a_remote_engines_prompt_is_reserved_by_an_upper_bound(demo_model: Path) -> None:
    """A remote engine does not tokenise: its reservation must still cover the prompt the upstream builds with
    the model's chat template (multi-byte text, tools and tool calls included), or the budget could be overspent."""
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    turns = (
        ChatTurn("system", ({"type": "text", "text": "Réponds en français 🌍"},)),
        ChatTurn.user("天気はどうですか、パリで？"),
        ChatTurn("assistant", (), (ToolCall("call_1", "get_weather", '{"city": "パリ"}'),)),
        ChatTurn("tool", ({"type": "text", "text": "晴れ、22°C"},), tool_call_id="call_1"),
    )
    messages = [
        {"role": "system", "content": "Réponds en français 🌍"},
        {"role": "user", "content": "天気はどうですか、パリで？"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "パリ"}}}
        ]},
        {"role": "tool", "content": "晴れ、22°C", "tool_call_id": "call_1"},
    ]  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    text = tokenizer.apply_chat_template(messages, tools=[tool], add_generation_prompt=True, tokenize=False)
    real = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    bound = RemotePrompt(EngineRequest(turns, tools=(tool,))).num_tokens
    assert real <= bound <= 4 * real  # an upper bound, within reason


# --- QuotaMiddleware driven directly: a response that takes its time ------------------------------------------


class SlowAnswer:
    """An ASGI app that starts its response, notes usage, and ends only when told (or when cancelled)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finish = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        self.started.set()
        note_usage(Usage(prompt_tokens=3, completion_tokens=4))
        await self.finish.wait()
        await send({"type": "http.response.body", "body": b"done", "more_body": False})


def request_scope(limiter: LocalLimiter, principal: Principal) -> dict:
    app = SimpleNamespace(state=SimpleNamespace(vlserve=SimpleNamespace(limiter=limiter)))
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "app": app,
            "state": {"principal": principal}}  # fmt: skip


async def call(middleware: QuotaMiddleware, scope: dict) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await middleware(dict(scope), receive, send)
    return sent


def test_a_stream_holds_its_slot_until_its_last_byte_and_its_tokens_are_counted() -> None:
    async def main() -> None:
        limiter = LocalLimiter()
        key = Principal("key_s", "s", frozenset({"chat"}), concurrent_requests=1, tokens_per_day=100)
        slow = SlowAnswer()
        middleware = QuotaMiddleware(slow)
        first = asyncio.create_task(call(middleware, request_scope(limiter, key)))
        await slow.started.wait()

        refused = await call(QuotaMiddleware(slow), request_scope(limiter, key))
        assert refused[0]["status"] == 429

        slow.finish.set()
        sent = await first
        assert sent[0]["status"] == 200
        assert (b"x-ratelimit-remaining-tokens", b"100") in sent[0]["headers"]
        lease = await limiter.acquire(key)  # the slot is free again, and the 7 tokens are counted
        assert lease.headers["x-ratelimit-remaining-tokens"] == "93"

    asyncio.run(main())


def test_a_request_cancelled_mid_way_frees_its_slot() -> None:
    async def main() -> None:
        limiter = LocalLimiter()
        key = Principal("key_c", "c", frozenset({"chat"}), concurrent_requests=1, tokens_per_day=100)
        slow = SlowAnswer()
        gone = asyncio.create_task(call(QuotaMiddleware(slow), request_scope(limiter, key)))
        await slow.started.wait()
        gone.cancel()  # the client went away and the server cancelled the request
        with pytest.raises(asyncio.CancelledError):
            await gone
        lease = await limiter.acquire(key)
        assert lease.headers["x-ratelimit-remaining-tokens"] == "93"  # what it used before it was cut is counted

    asyncio.run(main())


def test_tokens_are_read_from_the_audit_record_when_one_is_open() -> None:
    async def main() -> None:
        limiter = LocalLimiter()
        key = Principal("key_r", "r", frozenset({"chat"}), tokens_per_day=100)
        slow = SlowAnswer()
        slow.finish.set()
        record = RequestRecord(prompt_tokens=10)  # opened by the audit middleware, outside this one
        token = current_record.set(record)
        try:
            await call(QuotaMiddleware(slow), request_scope(limiter, key))
        finally:
            current_record.reset(token)
        assert record.total_tokens == 17  # the inner layers filled the same record
        assert (await limiter.acquire(key)).headers["x-ratelimit-remaining-tokens"] == "83"

    asyncio.run(main())
