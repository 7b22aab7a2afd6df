"""VLSERVE_ADMIN_KEY: the deployment's first key, stored at start-up, usable at once, never duplicated or revived."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tests.security.keyed import CHAT, assert_error, serving
from vlserve.cli import app
from vlserve.security.keys import ADMIN_KEY_NAME, new_secret
from vlserve.settings import Settings


def test_the_admin_key_works_from_the_first_request_on_every_route(tmp_path):
    secret = new_secret()
    with serving(tmp_path, admin_key=secret) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        assert client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
        assert client.get("/metrics", headers=headers).status_code == 200
        rows = client.app.state.vlserve.keys.list()
    assert [(r.name, set(r.scopes.split(","))) for r in rows] == [
        (ADMIN_KEY_NAME, {"chat", "documents", "metrics", "admin"})
    ]


def test_restarts_and_replicas_keep_one_key_and_a_revoked_one_stays_revoked(tmp_path, caplog):
    secret = new_secret()
    with serving(tmp_path, admin_key=secret) as client:
        (row,) = client.app.state.vlserve.keys.list()
    with serving(tmp_path, admin_key=secret) as client:  # a restart, or a second replica on the same database
        assert [r.id for r in client.app.state.vlserve.keys.list()] == [row.id]
        client.app.state.vlserve.keys.revoke(row.id)
    with caplog.at_level(logging.WARNING, logger="vlserve.security"), serving(tmp_path, admin_key=secret) as client:
        response = client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {secret}"})
        assert_error(response, 401, says="revoked")
        assert len(client.app.state.vlserve.keys.list()) == 1
    assert "stays revoked" in caplog.text
    assert secret not in caplog.text


@pytest.mark.parametrize("bad", ["hunter2", "vlsk_short", "sk-" + "a" * 40, "vlsk_" + "a" * 40 + " "])
def test_a_malformed_admin_key_is_refused_at_start_up_in_one_line_without_echoing_it(bad):
    with pytest.raises(ValidationError):
        Settings(admin_key=bad)
    result = CliRunner().invoke(app, ["serve"], env={"VLSERVE_ADMIN_KEY": bad})
    assert result.exit_code == 2, result.output
    assert "admin_key: must be vlsk_" in result.output
    assert "Traceback" not in result.output
    assert bad.strip() not in result.output


def test_keys_secret_prints_a_fresh_usable_admin_key_and_stores_nothing(tmp_path):
    result = CliRunner().invoke(app, ["keys", "secret"], env={"VLSERVE_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0
    secret = result.stdout.strip()
    assert Settings(admin_key=secret).admin_key.get_secret_value() == secret
    assert secret != CliRunner().invoke(app, ["keys", "secret"]).stdout.strip()
    assert not (tmp_path / "vlserve.db").exists()
