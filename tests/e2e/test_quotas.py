"""Per-key limits on real servers: keys made with `vlserve keys create`, the 4th request in a minute refused
with 429, Retry-After and x-ratelimit-* headers while another key is served; a stream holding a key's only
slot until it ends or its client leaves; and two servers sharing one Redis sharing the limits."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis

from tests.e2e.server import FAST_IMAGES, ServerProcess
from tests.support.databases import postgres_database
from tests.support.redis_store import REDIS_URL, redis_prefix

pytestmark = pytest.mark.e2e

SHORT = {"messages": [{"role": "user", "content": "say hi"}], "max_tokens": 2}
LONG = {"messages": [{"role": "user", "content": "tell a story"}], "max_tokens": 3000, "ignore_eos": True}


def create_key(settings: dict[str, object], name: str, *options: str) -> dict:
    """`vlserve keys create NAME … --json` on the database ``settings`` name, as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
    env.update({f"VLSERVE_{k.upper()}": str(v) for k, v in settings.items()})
    done = subprocess.run(
        [sys.executable, "-m", "vlserve.cli", "keys", "create", name, *options, "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def bearer(key: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


def chat(url: str, key: dict, body: dict = SHORT) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=bearer(key), timeout=120)


def assert_fourth_request_refused(urls: list[str], limited: dict, other: dict) -> None:
    """Three requests of a 3-per-minute key pass (spread over ``urls``), the fourth gets a 429; ``other`` not."""
    for n in range(3):
        r = chat(urls[n % len(urls)], limited)
        assert r.status_code == 200, r.text
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert r.headers["x-ratelimit-remaining-requests"] == str(2 - n)
    r = chat(urls[-1], limited)
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "rate_limit_error")
    assert "3 requests per minute" in error["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-ratelimit-reset-requests"].endswith("s")

    client = openai.OpenAI(base_url=f"{urls[0]}/v1", api_key=limited["key"], max_retries=0, timeout=60)
    with pytest.raises(openai.RateLimitError) as refused:  # what an SDK user sees
        client.chat.completions.create(model="vlserve-demo-random", **SHORT)
    assert refused.value.code == "rate_limit_exceeded"

    for url in urls:
        r = chat(url, other)
        assert r.status_code == 200, r.text


@contextlib.contextmanager
def serving(demo_model: Path, logs: Path, count: int = 1, **settings: object) -> Iterator[list[ServerProcess]]:
    """``count`` servers on the demo model with API keys required, stopped when the block ends."""
    servers = [
        ServerProcess(demo_model, logs / f"server-{n}.log", require_auth=1, warmup=0, **{**FAST_IMAGES, **settings})
        for n in range(count)
    ]
    try:
        yield [server.wait_ready() for server in servers]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def keyed_server(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict]]:
    data: Path = tmp_path_factory.mktemp("quota-data")
    keys = {
        "limited": create_key({"data_dir": data}, "limited", "--requests-per-minute", "3"),
        "other": create_key({"data_dir": data}, "other"),
        "single": create_key({"data_dir": data}, "single", "--concurrent", "1"),
    }
    with serving(demo_model, data, data_dir=data) as (server,):
        yield server, keys


def test_the_fourth_request_in_a_minute_gets_a_429_and_another_key_does_not(keyed_server) -> None:
    server, keys = keyed_server
    assert_fourth_request_refused([server.url], keys["limited"], keys["other"])


def test_a_stream_holds_the_keys_only_slot_until_it_ends_or_its_client_leaves(keyed_server) -> None:
    server, keys = keyed_server
    single = keys["single"]
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json={**LONG, "stream": True}, headers=bearer(single), timeout=60
    ) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # generating
        r = chat(server.url, single)
        assert r.status_code == 429, r.text
        assert "in progress" in r.json()["error"]["message"] and r.headers["retry-after"] == "1"
    # The client hung up mid-stream: the server notices, ends the generation and frees the slot.
    deadline = time.monotonic() + 30
    while (r := chat(server.url, single)).status_code == 429:
        assert time.monotonic() < deadline, "the slot of an abandoned stream was never freed"
        time.sleep(0.2)
    assert r.status_code == 200, r.text

    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json={**SHORT, "stream": True}, headers=bearer(single), timeout=60
    ) as stream:
        assert stream.status_code == 200
        assert "data: [DONE]" in list(stream.iter_lines())
    assert chat(server.url, single).status_code == 200  # a stream read to its end freed the slot at once


@pytest.fixture
def postgres() -> Iterator[str]:
    yield from postgres_database()


@pytest.fixture
def prefix() -> Iterator[str]:
    yield from redis_prefix()


def test_two_servers_sharing_redis_share_the_limits(demo_model: Path, tmp_path: Path, postgres: str, prefix: str):
    shared = {"database_url": postgres}  # the same keys, the same Redis
    limited = create_key(shared, "limited", "--requests-per-minute", "3")
    other = create_key(shared, "other", "--requests-per-minute", "3")
    settings = {"redis_url": REDIS_URL, "redis_prefix": prefix, "document_worker": 0, **shared}
    with serving(demo_model, tmp_path, 2, data_dir=tmp_path, **settings) as servers:
        assert_fourth_request_refused([s.url for s in servers], limited, other)
    keys = redis.Redis.from_url(REDIS_URL)
    try:  # the counts really are in Redis, under this deployment's prefix
        assert keys.zcard(f"{prefix}{{{limited['id']}}}:requests") == 3
    finally:
        keys.close()
