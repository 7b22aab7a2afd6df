"""API keys on a real server with VLSERVE_REQUIRE_AUTH=1 and PostgreSQL: keys made with the CLI, used with the
official openai client; 401 without or with a revoked key, 403 without the scope; the audit trail shows each
request under its trace id; /docs works with a key and loads nothing from outside."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.server import ServerProcess
from tests.support.databases import postgres_database
from tests.support.images import chart, chart_url, encode

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    yield from postgres_database()


@pytest.fixture(scope="module")
def server(start_server, database) -> Iterator[ServerProcess]:
    running = start_server(require_auth=1, database_url=database)
    yield running
    running.stop()  # before its database is dropped


def vlserve(database: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m vlserve.cli ARGS` with the server's database, as an operator on the same machine runs it."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}, **(env or {})}
    env["VLSERVE_DATABASE_URL"] = database
    command = [sys.executable, "-m", "vlserve.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def create_key(database: str, name: str, scopes: str) -> dict:
    result = vlserve(database, "keys", "create", name, "--scopes", scopes, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def client(server: ServerProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)


def audit(database: str, *args: str) -> list[dict]:
    result = vlserve(database, "audit", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_keys_scopes_revocation_and_the_audit_trail(server, database):
    chat = create_key(database, "e2e chat", "chat")
    docs_only = create_key(database, "e2e documents", "documents")
    image = {"type": "image_url", "image_url": {"url": chart_url(3)}}
    messages = [{"role": "user", "content": [image, {"type": "text", "text": "What values?"}]}]

    raw = client(server, chat["key"]).chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=6, temperature=0
    )
    answer, trace_id = raw.parse(), raw.headers["x-request-id"]
    assert answer.choices[0].message.content and answer.usage.prompt_tokens > 16

    anonymous = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": messages}, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["code"] == "missing_api_key"
    assert httpx.get(f"{server.url}/nowhere", timeout=10).status_code == 401, "unknown paths too"
    assert httpx.get(f"{server.url}/health/ready", timeout=10).status_code == 200, "the probes stay open"

    with pytest.raises(openai.AuthenticationError) as wrong:
        client(server, "vlsk_" + "0" * 43).models.list()
    assert wrong.value.code == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as scope:
        client(server, docs_only["key"]).chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    assert scope.value.code == "insufficient_scope" and "'chat'" in scope.value.message

    revoked = vlserve(database, "keys", "revoke", chat["id"])
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 15  # the server trusts a checked key for a few seconds (keys.CACHE_SECONDS)
    while True:
        try:
            client(server, chat["key"]).models.list()
        except openai.AuthenticationError as exc:
            assert "revoked" in exc.message
            break
        assert time.monotonic() < deadline, "a revoked key still works"
        time.sleep(0.5)

    deadline = time.monotonic() + 10  # the record is written just after the response has gone out
    while not (records := {r["trace_id"]: r for r in audit(database)}).get(anonymous.headers["x-request-id"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    mine = records[trace_id]
    assert (mine["key_id"], mine["status"], mine["endpoint"], mine["method"]) == (
        chat["id"], 200, "/v1/chat/completions", "POST",
    )  # fmt: skip
    assert mine["model"] == MODEL and mine["client"] == "127.0.0.1"
    assert (mine["prompt_tokens"], mine["completion_tokens"]) == (
        answer.usage.prompt_tokens, answer.usage.completion_tokens,
    )  # fmt: skip
    assert len(mine["image_hashes"]) == 1 and mine["image_hashes"][0].startswith("sha256:")
    assert "content" not in mine, "no prompt text or image bytes by default"
    refused = records[anonymous.headers["x-request-id"]]
    assert (refused["key_id"], refused["status"]) == (None, 401)
    assert [r["status"] for r in audit(database, "--key", docs_only["id"])] == [403]


def test_docs_work_with_a_key_and_load_nothing_from_outside(server, database):
    key = create_key(database, "e2e docs", "documents")
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert httpx.get(f"{server.url}/docs", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/openapi.json", timeout=10).status_code == 401
    page = httpx.get(f"{server.url}/docs", headers=headers, timeout=10)
    assert page.status_code == 200
    refs = re.findall(r"""(?:src|href)=["']([^"']+)|url: ?["']([^"']+)""", page.text)
    urls = [a or b for a, b in refs]
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert not re.search(r"https?://", page.text)
    for url in urls:
        assert httpx.get(f"{server.url}{url}", headers=headers, timeout=10).status_code == 200, url
    schema = httpx.get(f"{server.url}/openapi.json", headers=headers, timeout=10).json()
    assert "/v1/chat/completions" in schema["paths"]


def test_the_cli_clients_send_vlserve_api_key(server, database, tmp_path):
    key = create_key(database, "e2e cli", "chat")
    image = tmp_path / "chart.png"
    image.write_bytes(encode(chart(5)))
    ask = ["ask", str(image), "--prompt", "What values?", "--url", server.url, "--max-tokens", "4"]
    refused = vlserve(database, *ask)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "Traceback" not in refused.stderr
    answered = vlserve(database, *ask, env={"VLSERVE_API_KEY": key["key"]})
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip()
