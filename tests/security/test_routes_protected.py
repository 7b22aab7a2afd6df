"""Every route of the app answers 401 without a key: a route added later cannot ship unprotected."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts

from tests.security.keyed import assert_error, serving
from vlserve.app import build_app
from vlserve.security.auth import is_open, is_playground
from vlserve.settings import Settings

_PARAM = re.compile(r"\{[^}]+\}")


def served_routes(**settings: object) -> list[tuple[str, str]]:
    """(method, concrete path) for every route build_app composes, path parameters filled in."""
    app = build_app(Settings(**settings))
    found = set()
    for route in iter_route_contexts(app.routes):
        if route.path is None:
            continue
        path = _PARAM.sub("x", route.path)
        for method in sorted(route.methods or {"GET"}):
            found.add((method, path))
    return sorted(found)


@pytest.fixture
def api(tmp_path):
    with serving(tmp_path) as client:
        yield client


def test_the_enumeration_sees_every_kind_of_route():
    paths = {path for _, path in served_routes()}
    expected = {"/v1/chat/completions", "/v1/completions", "/v1/chat/vision", "/v1/models", "/v1/documents",
                "/v1/documents/x", "/v1/documents/x/result", "/health/ready", "/docs", "/docs/assets/x",
                "/openapi.json"}  # fmt: skip
    assert expected <= paths, expected - paths


def test_every_route_but_the_health_probes_and_the_playground_answers_401_without_a_key(api):
    routes = [(m, p) for m, p in served_routes() if not is_open(p) and not is_playground(p)]
    assert len(routes) >= 12
    for method, path in routes:
        response = api.request(method, path, json={})
        if method == "HEAD":
            assert response.status_code == 401, (method, path)
            continue
        assert_error(response, 401, code="missing_api_key", kind="authentication_error")
        assert response.headers["www-authenticate"] == "Bearer"


def test_only_the_health_probes_are_open(api):
    opened = [(m, p) for m, p in served_routes() if is_open(p)]
    assert {p for _, p in opened} <= {"/health", "/health/live", "/health/ready"}
    for method, path in opened:
        assert api.request(method, path).status_code == 200, path


def test_docs_and_schema_are_routes_only_when_enabled():
    assert {"/docs", "/openapi.json"} & {p for _, p in served_routes(docs=False)} == set()


def test_the_playgrounds_page_and_files_are_the_only_other_open_routes_and_only_while_it_is_served(api):
    opened = {(m, p) for m, p in served_routes() if is_playground(p)}
    assert {p for _, p in opened} == {"/", "/web/x"} and {m for m, _ in opened} <= {"GET", "HEAD"}
    assert api.get("/").status_code == 200
    assert not {p for _, p in served_routes(playground=False) if is_playground(p)}
