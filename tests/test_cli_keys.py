"""`vlserve keys` and `vlserve audit` against the configured database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from tests.e2e.server import free_port
from vlserve.cli import app
from vlserve.cli.keys import parse_since
from vlserve.security.audit import AuditEntry, AuditStore
from vlserve.security.keys import KeyStore
from vlserve.settings import Settings
from vlserve.store.db import make_engine, make_sessions, migrate, utcnow

runner = CliRunner()


@pytest.fixture
def env(database_url, tmp_path, monkeypatch) -> dict[str, str]:
    for name in [n for n in os.environ if n.startswith("VLSERVE_")]:
        monkeypatch.delenv(name)
    return {"VLSERVE_DATABASE_URL": database_url, "VLSERVE_DATA_DIR": str(tmp_path)}


def run(env: dict[str, str], *args: str):
    return runner.invoke(app, list(args), env=env)


def lines(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def sessions(env):
    migrate(env["VLSERVE_DATABASE_URL"])
    engine = make_engine(env["VLSERVE_DATABASE_URL"])
    yield make_sessions(engine)
    engine.dispose()


def test_create_json_prints_one_line_whose_key_authenticates(env, sessions):
    result = run(env, "keys", "create", "ci", "--scopes", "chat,metrics", "--expires", "7", "--json",
                 "--requests-per-minute", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    [line] = result.stdout.strip().splitlines()
    made = json.loads(line)
    assert made["id"].startswith("key_") and made["name"] == "ci" and made["scopes"] == ["chat", "metrics"]
    assert made["requests_per_minute"] == 3 and made["concurrent_requests"] is None
    expires = datetime.fromisoformat(made["expires_at"])
    assert timedelta(days=6.9) < expires - datetime.now(UTC) < timedelta(days=7.1)
    who = KeyStore(sessions, Settings()).authenticate(made["key"])
    assert who.key_id == made["id"] and who.requests_per_minute == 3


def test_create_prints_the_secret_alone_on_stdout_and_warns_it_is_shown_once(env, sessions):
    result = run(env, "keys", "create", "laptop")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("vlsk_") and "\n" not in secret
    assert "shown once" in result.stderr and "scopes chat,documents" in result.stderr
    assert KeyStore(sessions, Settings()).authenticate(secret).name == "laptop"


def test_list_shows_keys_without_secrets_and_revoke_ends_them(env):
    made = json.loads(run(env, "keys", "create", "svc", "--json").stdout)
    listing = run(env, "keys", "list", "--json")
    assert listing.exit_code == 0
    [row] = [json.loads(line) for line in listing.stdout.splitlines()]
    assert (row["id"], row["name"], row["prefix"], row["revoked_at"]) == (made["id"], "svc", made["key"][:12], None)
    assert made["key"] not in listing.stdout
    table = run(env, "keys", "list")
    assert made["id"] in table.stdout and "svc" in table.stdout and made["key"] not in table.stdout

    revoked = run(env, "keys", "revoke", made["id"])
    assert revoked.exit_code == 0 and f"revoked {made['id']}" in revoked.stderr
    [row] = [json.loads(line) for line in run(env, "keys", "list", "--json").stdout.splitlines()]
    assert row["revoked_at"] is not None


def test_misuse_is_one_line_with_a_non_zero_exit(env):
    unknown = run(env, "keys", "revoke", "key_nope")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip().splitlines() == ["error: no key 'key_nope' (see `vlserve keys list`)"]
    scope = run(env, "keys", "create", "x", "--scopes", "chat,root")
    assert scope.exit_code == 2 and len(scope.stderr.strip().splitlines()) == 1
    assert "unknown scope 'root'" in scope.stderr
    since = run(env, "audit", "--since", "last tuesday")
    assert since.exit_code == 2 and "neither a date" in since.stderr and len(since.stderr.strip().splitlines()) == 1


def test_audit_prints_records_newest_first_filtered_by_key_and_time(env, sessions):
    store = AuditStore(sessions)
    now = utcnow()
    for at, key, status in [(now - timedelta(days=3), "key_a", 200), (now - timedelta(minutes=5), "key_b", 401),
                            (now - timedelta(minutes=1), "key_a", 200)]:  # fmt: skip
        store.write(AuditEntry(at=at, key_id=key, method="POST", endpoint="/v1/chat/completions", status=status,
                               latency_ms=12, trace_id=f"trace-{key}-{status}", prompt_tokens=5, completion_tokens=2,
                               client="127.0.0.1", image_hashes=["sha256:00"]))  # fmt: skip
    rows = lines(run(env, "audit", "--json"))
    assert [r["key_id"] for r in rows] == ["key_a", "key_b", "key_a"]
    assert rows[0]["status"] == 200 and rows[0]["prompt_tokens"] == 5 and rows[0]["image_hashes"] == ["sha256:00"]
    assert "content" not in rows[0]
    recent = lines(run(env, "audit", "--json", "--since", "1h"))
    assert [r["key_id"] for r in recent] == ["key_a", "key_b"]
    mine = lines(run(env, "audit", "--json", "--key", "key_a", "--limit", "1"))
    assert [(r["key_id"], r["trace_id"]) for r in mine] == [("key_a", "trace-key_a-200")]
    table = run(env, "audit")
    assert "trace-key_b-401" in table.stdout and "5+2" in table.stdout


def test_audit_filters_by_document_job_its_requests_and_pages(env, sessions):
    store = AuditStore(sessions)
    now = utcnow()
    for method, resource, count in [("POST", "doc_ab", None), ("PAGE", "doc_ab/pages/2", None),
                                    ("PAGE", "doc_abc/pages/1", None), ("GET", "docXab", None),
                                    ("POST", None, 40)]:  # fmt: skip
        store.write(AuditEntry(at=now, key_id="key_a", method=method, endpoint="/v1/documents", status=200,
                               latency_ms=1, trace_id="t", resource=resource, count=count))  # fmt: skip
    rows = lines(run(env, "audit", "--json", "--resource", "doc_ab"))
    assert sorted(r["resource"] for r in rows) == ["doc_ab", "doc_ab/pages/2"]
    every = lines(run(env, "audit", "--json"))
    assert sorted(r["count"] for r in every) == [1, 1, 1, 1, 40]
    assert "doc_ab/pages/2" in run(env, "audit").stdout


def test_a_database_that_cannot_be_reached_is_one_line_without_the_password(tmp_path, monkeypatch):
    url = f"postgresql+psycopg://vlserve:s3cret@127.0.0.1:{free_port()}/vlserve"  # nothing listens there
    env = {"VLSERVE_DATABASE_URL": url, "VLSERVE_DATA_DIR": str(tmp_path)}
    for args in (["keys", "list"], ["keys", "create", "x"], ["audit"]):
        result = run(env, *args)
        assert result.exit_code == 1, result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: cannot open the database postgresql+psycopg://vlserve:***@127.0.0.1")
        assert "s3cret" not in result.output and "Traceback" not in result.output


def test_since_takes_dates_and_times_ago():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T08:30+01:00", now).astimezone(UTC) == datetime(2026, 11, 1, 7, 30, tzinfo=UTC)
    assert parse_since("1h", now) == now - timedelta(hours=1)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    with pytest.raises(ValueError, match="neither a date"):
        parse_since("yesterday", now)


def test_demo_eval_sends_vlserve_api_key(monkeypatch):
    import vlserve.demo.evaluate

    sent = {}

    async def evaluate(url: str, **options: object) -> dict:
        sent.update(options, url=url)
        return {}

    monkeypatch.setattr(vlserve.demo.evaluate, "evaluate", evaluate)
    result = runner.invoke(
        app, ["demo", "eval", "--url", "http://127.0.0.1:9", "--n", "1"], env={"VLSERVE_API_KEY": "vlsk_x"}
    )
    assert result.exit_code == 0, result.output
    assert (sent["url"], sent["api_key"]) == ("http://127.0.0.1:9", "vlsk_x")
