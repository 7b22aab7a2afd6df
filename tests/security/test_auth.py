"""API keys at the HTTP edge: 401 without a valid key, 403 without the route's scope, health probes open."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from tests.security.keyed import CHAT, assert_error, new_key, serving
from vlserve.security.auth import ANY_KEY, bearer_token, required_scope
from vlserve.store.db import utcnow
from vlserve.store.models import ApiKey


@pytest.fixture
def api(tmp_path):
    with serving(tmp_path) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/v1/documents", "documents"),
        ("/v1/documents/doc_1/result", "documents"),
        ("/v1/chat/completions", "chat"),
        ("/v1/chat/vision", "chat"),
        ("/v1/completions", "chat"),
        ("/v1/models/x", "chat"),
        ("/v1/embeddings", "chat"),
        ("/v1/documentsx", "chat"),
        ("/metrics", "metrics"),
        ("/docs", ANY_KEY),
        ("/docs/assets/swagger-ui.css", ANY_KEY),
        ("/openapi.json", ANY_KEY),
        ("/", "admin"),
        ("/admin/anything", "admin"),
    ],
)
def test_each_path_needs_its_scope_and_anything_unlisted_needs_admin(path, scope):
    assert required_scope(path) == scope


@pytest.mark.parametrize(
    ("header", "token"),
    [(b"Bearer vlsk_abc", "vlsk_abc"), (b"bearer   vlsk_abc  ", "vlsk_abc"), (b"Basic dXNlcjpwdw==", None),
     (b"Bearer ", None), (b"vlsk_abc", None)],
)  # fmt: skip
def test_only_a_bearer_token_counts(header, token):
    assert bearer_token({"headers": [(b"authorization", header)]}) == token
    assert bearer_token({"headers": []}) is None


def assert_unauthorized(response, code: str, says: str) -> None:
    assert_error(response, 401, code=code, says=says, kind="authentication_error")
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"]


def test_no_key_is_a_401_missing_api_key_on_routes_and_unknown_paths_alike(api):
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/nowhere")]:
        assert_unauthorized(api.request(method, path, json=CHAT), "missing_api_key", "vlserve keys create")
    wrong_scheme = {"Authorization": "Basic dXNlcjpwdw=="}
    assert_unauthorized(api.get("/v1/models", headers=wrong_scheme), "missing_api_key", "Bearer")


def test_an_unknown_revoked_or_expired_key_is_a_401_invalid_api_key(api):
    bad = {"Authorization": "Bearer vlsk_" + "0" * 43}
    assert_unauthorized(api.get("/v1/models", headers=bad), "invalid_api_key", "no such key")
    openai_style = {"Authorization": "Bearer sk-proj-abc"}
    assert_unauthorized(api.get("/v1/models", headers=openai_style), "invalid_api_key", "not a vlserve key")

    revoked, headers = new_key(api, "revoked")
    assert api.get("/v1/models", headers=headers).status_code == 200
    api.app.state.vlserve.keys.revoke(revoked)
    assert_unauthorized(api.get("/v1/models", headers=headers), "invalid_api_key", f"{revoked} was revoked")

    expired, headers = new_key(api, "expired")
    runtime = api.app.state.vlserve
    with runtime.keys._sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.id == expired).values(expires_at=utcnow() - timedelta(days=1)))
    assert_unauthorized(api.get("/v1/models", headers=headers), "invalid_api_key", f"{expired} expired")


def test_a_key_without_the_routes_scope_is_a_403_naming_the_scope(api):
    _, chat = new_key(api, "chat only", ["chat"])
    _, docs = new_key(api, "documents only", ["documents"])
    assert api.post("/v1/chat/completions", json=CHAT, headers=chat).status_code == 200
    forbidden = api.get("/v1/documents", headers=chat)
    assert_error(forbidden, 403, code="insufficient_scope", says="'documents'", kind="permission_error")
    assert api.get("/v1/documents", headers=docs).status_code == 200
    assert_error(api.post("/v1/chat/completions", json=CHAT, headers=docs), 403, says="'chat' scope")
    assert_error(api.get("/v1/models", headers=docs), 403, says="'chat' scope")
    assert_error(api.get("/metrics", headers=chat), 403, says="'metrics' scope")
    assert_error(api.get("/nowhere", headers=chat), 403, says="'admin' scope")


def test_an_admin_key_passes_everywhere_and_a_metrics_key_reaches_metrics(api):
    _, admin = new_key(api, "admin", ["admin"])
    _, metrics = new_key(api, "prometheus", ["metrics"])
    assert api.post("/v1/chat/completions", json=CHAT, headers=admin).status_code == 200
    assert api.get("/v1/documents", headers=admin).status_code == 200
    assert api.get("/nowhere", headers=admin).status_code == 404
    assert api.get("/metrics", headers=metrics).status_code not in (401, 403)
    assert api.get("/metrics", headers=admin).status_code not in (401, 403)


def test_the_health_probes_need_no_key(api):
    for path in ("/health/live", "/health/ready", "/health"):
        assert api.get(path).status_code == 200, path


def test_the_key_database_being_down_is_a_503_to_retry_not_a_401(api, monkeypatch):
    _, headers = new_key(api)

    def down(secret: str):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(api.app.state.vlserve.keys, "_check", down)
    response = api.get("/v1/models", headers={"Authorization": "Bearer vlsk_not_cached"})
    assert_error(response, 503, says="retry", kind="server_error")
    assert response.headers["retry-after"] == "5"


def test_with_auth_off_no_key_is_needed(tmp_path):
    with serving(tmp_path, require_auth=None) as api:  # auto: the default loopback host needs none
        assert api.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert api.get("/v1/documents").status_code == 200
        assert api.get("/nowhere").status_code == 404


def test_two_authorization_headers_are_a_400_whichever_comes_first(api):
    _, admin = new_key(api, "admin", ["admin"])
    _, chat = new_key(api, "chat only", ["chat"])
    pairs = [admin["Authorization"], chat["Authorization"]]
    for order in (pairs, pairs[::-1]):
        headers = [("Authorization", value) for value in order]
        for method, path in (("GET", "/metrics"), ("POST", "/v1/chat/completions")):
            refused = api.request(method, path, headers=headers, json=CHAT)
            assert_error(refused, 400, code="duplicate_authorization_header", says="2 Authorization headers")
    assert api.get("/metrics", headers=admin).status_code == 200
