"""The HTTP surface a client meets before any route logic: 404/405 wording, Allow, HEAD, CORS, the OpenAPI
schema's declared errors, and webhook hosts checked at submission. Fake engine; loopback only."""

from __future__ import annotations

import re

import pytest

from tests.api.fakes import FakeEngine
from tests.api.test_bad_input import assert_error
from tests.support.pdfs import text_pdf
from vlserve.errors import error_body, sanitize_message, shorten

ORIGIN = "https://app.example"


# --- 404 and 405 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_404_names_the_method_and_the_real_path(client, method):
    response = client.request(method, "/v1/chat/completion/extra")
    assert_error(response, 404, code="not_found", says=f"no route {method} /v1/chat/completion/extra")


def test_a_404_keeps_the_path_as_sent_and_shortens_a_long_one(client):
    assert "no route GET /v1/a%20b/c" in client.get("/v1/a%20b/c").json()["error"]["message"]
    long = "/v1/" + "x/" * 500
    message = client.get(long).json()["error"]["message"]
    assert message.startswith("no route GET /v1/x/x/") and message.endswith("…") and len(message) < 250


def test_filesystem_paths_in_internal_messages_are_still_masked():
    internal = "cannot open /home/alice/models/qwen/config.json for /v1/models/qwen"
    assert sanitize_message(internal) == "cannot open <path> for <path>"
    assert sanitize_message(internal, ["/v1/models/qwen"]) == "cannot open <path> for /v1/models/qwen"
    assert sanitize_message("object at 0x7f3a2b1c0d90 failed") == "object failed"
    assert shorten("a" * 300).endswith("…") and len(shorten("a" * 300)) == 201


def test_the_verbatim_text_is_kept_only_where_the_caller_names_it():
    from vlserve.errors import NotFoundError

    error = NotFoundError("no route GET /srv/data/secret.txt")
    assert error_body(error)["error"]["message"] == "no route GET <path>"
    assert error_body(error, ["/srv/data/secret.txt"])["error"]["message"] == "no route GET /srv/data/secret.txt"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/models", "GET, HEAD"),
        ("POST", "/v1/models/fake-vl", "GET, HEAD"),
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/documents", "GET, HEAD, POST"),  # two routes share the path: both are listed
        ("PATCH", "/v1/documents/doc_x", "GET, HEAD, DELETE"),
        ("POST", "/health/ready", "GET, HEAD"),
    ],
)
def test_a_405_lists_every_method_the_path_answers_in_allow(client, method, path, allow):
    response = client.request(method, path)
    assert response.headers["allow"] == allow
    error = assert_error(response, 405, code="method_not_allowed", says=f"method {method} is not allowed on {path}")
    assert allow in error["message"]


# --- HEAD ------------------------------------------------------------------------------------------


def get_paths(client) -> list[str]:
    """Every GET operation of the schema, path parameters filled in (a missing resource is fine: HEAD must
    then answer the same 404 the GET does)."""
    paths = [p for p, ops in client.get("/openapi.json").json()["paths"].items() if "get" in ops]
    return [re.sub(r"\{[^}]+\}", "fake-vl", path) for path in paths]


def test_head_answers_every_get_route_with_the_gets_status_and_headers_and_no_body(client):
    paths = get_paths(client)
    assert {"/v1/models", "/health/ready", "/v1/documents"} <= set(paths)
    for path in paths:
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["content-length"] == str(len(got.content)), path
        assert head.headers["x-request-id"] and head.headers["x-request-id"] != got.headers["x-request-id"]


def test_head_on_a_post_only_route_is_a_405_with_allow(client):
    response = client.head("/v1/chat/completions")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.content == b""


# --- CORS ------------------------------------------------------------------------------------------


def preflight(client, path: str = "/v1/chat/completions", origin: str = ORIGIN):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_cors_is_off_by_default(client):
    response = preflight(client)
    assert "access-control-allow-origin" not in response.headers
    got = client.get("/v1/models", headers={"Origin": ORIGIN})
    assert got.status_code == 200
    assert not any(name.startswith("access-control-") for name in got.headers)


def test_an_allowed_origin_gets_preflights_answered_and_its_headers_exposed(make_client):
    client = make_client(cors_origins=[ORIGIN])
    response = preflight(client)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers

    got = client.get("/v1/models", headers={"Origin": ORIGIN})
    assert got.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip().lower() for h in got.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-reset-tokens"} <= exposed


def test_another_origin_gets_no_cors_headers(make_client):
    client = make_client(cors_origins=[ORIGIN])
    assert "access-control-allow-origin" not in preflight(client, origin="https://evil.example").headers
    got = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in got.headers


def test_a_preflight_is_answered_before_authentication(make_client):
    client = make_client(cors_origins=["*"], require_auth=True)
    response = preflight(client)  # browsers never send Authorization on a preflight
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    refused = client.post("/v1/chat/completions", json={}, headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"  # the page can read why it was refused


# --- OpenAPI ---------------------------------------------------------------------------------------


def operations(schema: dict) -> dict[tuple[str, str], dict]:
    return {(m, p): op for p, ops in schema["paths"].items() for m, op in ops.items()}


def declared(schema: dict, method: str, path: str) -> set[int]:
    return {int(s) for s in operations(schema)[(method, path)]["responses"]}


def test_the_schema_declares_no_422_and_every_error_with_the_envelope(client):
    schema = client.get("/openapi.json").json()
    assert "422" not in str({k: op["responses"] for k, op in operations(schema).items()})
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    envelope = schema["components"]["schemas"]["ErrorResponse"]
    assert envelope["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    for (method, path), operation in operations(schema).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400 and not path.startswith("/health/"):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorResponse", (method, path, status)
                assert response["description"], (method, path, status)


def test_each_route_declares_the_statuses_it_really_sends(client):
    schema = client.get("/openapi.json").json()
    assert {400, 403, 404, 408, 413, 429, 500, 503} <= declared(schema, "post", "/v1/chat/completions")
    assert {400, 403, 413, 415, 503} <= declared(schema, "post", "/v1/documents")
    assert {400, 503} <= declared(schema, "get", "/v1/documents")
    assert {404, 409} <= declared(schema, "delete", "/v1/documents/{document_id}")
    assert {404} <= declared(schema, "get", "/v1/models/{model_id}")
    assert declared(schema, "get", "/v1/models") == {200, 503}  # no input: nothing to refuse but a draining server
    assert declared(schema, "get", "/health/ready") == {200, 503}
    assert 401 not in declared(schema, "post", "/v1/chat/completions")  # auth is off on loopback
    assert "security" not in schema
    retry = operations(schema)[("post", "/v1/chat/completions")]["responses"]["429"]["headers"]
    assert "Retry-After" in retry


def test_with_auth_on_every_route_but_health_declares_401_403_429_and_the_bearer_scheme(make_client):
    schema = make_client(require_auth=True).app.openapi()  # /openapi.json itself needs a key then
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "API key",
    }
    for (method, path), operation in operations(schema).items():
        statuses = {int(s) for s in operation["responses"]}
        if path.startswith("/health/"):
            assert operation["security"] == [] and 401 not in statuses
        else:
            assert {401, 403, 429} <= statuses, (method, path)


def test_errors_the_server_sends_are_declared_for_their_route(client):
    """A quick conformance pass in-process (schemathesis does the thorough one against a real server)."""
    schema = client.get("/openapi.json").json()
    sent = [
        ("post", "/v1/chat/completions", client.post("/v1/chat/completions", json={"messages": "nope"})),
        ("post", "/v1/chat/completions", client.post("/v1/chat/completions", json={"model": "x", "messages": []})),
        ("post", "/v1/completions", client.post("/v1/completions", content=b"{", headers={"content-type": "a/json"})),
        ("post", "/v1/documents", client.post("/v1/documents", files=[("file", ("a.txt", b"text", "text/plain"))])),
        ("get", "/v1/documents", client.get("/v1/documents", params={"limit": 0})),
        ("get", "/v1/documents/{document_id}", client.get("/v1/documents/doc_missing")),
        ("delete", "/v1/documents/{document_id}", client.delete("/v1/documents/doc_missing")),
        ("get", "/v1/models/{model_id}", client.get("/v1/models/other")),
    ]
    for method, path, response in sent:
        assert response.status_code >= 400, (method, path)
        assert response.status_code in declared(schema, method, path), (method, path, response.status_code)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# --- webhook hosts at submission -------------------------------------------------------------------


def test_a_webhook_host_resolving_to_loopback_is_refused_at_submission(make_client):
    api = make_client(FakeEngine(max_model_len=400))
    files = [("file", ("report.pdf", text_pdf(1), "application/pdf"))]
    response = api.post("/v1/documents", files=files, data={"webhook_url": "http://localhost:8081/hook"})
    assert_error(response, 403, code="url_refused", param="webhook_url", says="webhook URL host 'localhost'")
    assert "VLSERVE_URL_ALLOWLIST" in response.json()["error"]["message"]
    assert api.get("/v1/documents").json()["data"] == []  # nothing stored: the client learns it now


def test_an_allowlisted_webhook_host_is_accepted(make_client):
    api = make_client(FakeEngine(max_model_len=400), url_allowlist=["127.0.0.0/8", "::1"], document_worker=False)
    files = [("file", ("report.pdf", text_pdf(1), "application/pdf"))]
    response = api.post("/v1/documents", files=files, data={"webhook_url": "http://localhost:8081/hook"})
    assert response.status_code == 202, response.text
    assert response.json()["webhook_secret"]
