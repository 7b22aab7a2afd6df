"""GET /metrics over the fake engine: the values a dashboard reads move with real requests."""

from __future__ import annotations

import base64

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.fakes import FakeEngine, image_message
from tests.api.test_documents_api import SETTINGS, png, submit, wait_ended
from tests.security.keyed import new_key, serving
from tests.support.images import solid

CHAT = "/v1/chat/completions"


def scrape(client, headers: dict | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def ask(client, *, stream: bool = False, content: object = "hello there world", **extra):
    body = {"model": "fake-vl", "messages": [{"role": "user", "content": content}], "stream": stream, **extra}
    return client.post(CHAT, json=body)


def test_every_metric_is_prefixed_and_none_comes_from_the_default_registry(client):
    names = {name for name, _ in scrape(client)}
    assert names and all(name.startswith("vlserve_") for name in names), names
    assert not any(name.startswith(("python_", "process_")) for name in names)


def test_requests_latency_and_tokens_move_after_a_completion(client):
    before = scrape(client)
    response = ask(client, max_tokens=8)
    assert response.status_code == 200
    usage = response.json()["usage"]
    after = scrape(client)
    labels = {"endpoint": CHAT, "model": "fake-vl", "status": "200"}
    assert value(after, "vlserve_requests_total", **labels) == value(before, "vlserve_requests_total", **labels) + 1
    count = "vlserve_request_duration_seconds_count"
    assert value(after, count, endpoint=CHAT) == value(before, count, endpoint=CHAT) + 1
    for kind in ("prompt", "completion"):
        name = f"vlserve_{kind}_tokens_total"
        moved = value(after, name, model="fake-vl") - value(before, name, model="fake-vl")
        assert moved == usage[f"{kind}_tokens"] > 0


def test_a_streamed_answer_observes_time_to_first_token_and_per_output_token(client):
    before = scrape(client)
    body = {"model": "fake-vl", "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "a b c"}]}
    with client.stream("POST", CHAT, json=body) as r:
        assert r.status_code == 200
        assert "[DONE]" in "".join(r.iter_text())
    after = scrape(client)
    for name in ("vlserve_time_to_first_token_seconds_count", "vlserve_time_per_output_token_seconds_count"):
        assert value(after, name) == value(before, name) + 1, name
    assert 0 <= value(after, "vlserve_time_to_first_token_seconds_sum") < 60  # a sanity bound, not a timing


def test_an_error_inside_a_stream_that_answered_200_is_counted_by_its_code(make_client):
    from tests.api.test_completions_api import FailingEngine

    client = make_client(FailingEngine())
    before = scrape(client)
    with client.stream("POST", "/v1/completions", json={"prompt": "the sky is", "stream": True}) as r:
        assert r.status_code == 200
        assert '"internal_error"' in "".join(r.iter_text())
    after = scrape(client)
    assert value(after, "vlserve_errors_total", code="internal_error") == (
        value(before, "vlserve_errors_total", code="internal_error") + 1
    )


def test_image_tokens_are_counted(client):
    url = "data:image/png;base64," + base64.b64encode(solid((64, 48))).decode()
    response = client.post(CHAT, json={"model": "fake-vl", "messages": image_message(url), "max_tokens": 4})
    assert response.status_code == 200, response.text
    assert value(scrape(client), "vlserve_image_tokens_total", model="fake-vl") == 10  # the fake: 10 per image


def test_errors_are_counted_by_code_and_unknown_paths_do_not_grow_the_labels(client):
    assert ask(client, model="nope").status_code == 404
    assert client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    for n in range(3):
        assert client.get(f"/no/such/path/{n}").status_code == 404
    samples = scrape(client)
    assert value(samples, "vlserve_errors_total", code="model_not_found") == 1
    assert value(samples, "vlserve_errors_total", code="invalid_json") == 1
    assert value(samples, "vlserve_errors_total", code="not_found") == 3
    assert value(samples, "vlserve_requests_total", endpoint="unmatched", model="none", status="404") == 3
    endpoints = {dict(labels).get("endpoint") for name, labels in samples if name == "vlserve_requests_total"}
    assert not any(e and e.startswith("/no/") for e in endpoints), endpoints


def test_model_ready_and_load_gauges(make_client):
    ready, loading = make_client(), make_client(FakeEngine(ready=False))
    assert value(scrape(ready), "vlserve_model_ready") == 1
    assert value(scrape(loading), "vlserve_model_ready") == 0
    assert ask(loading).status_code == 503
    samples = scrape(loading)
    assert value(samples, "vlserve_errors_total", code="unavailable") == 1
    for name in ("vlserve_queue_depth", "vlserve_running_requests", "vlserve_admitted_requests"):
        assert (name, ()) in samples and value(samples, name) == 0, name


def test_document_pages_are_counted_by_outcome(make_client):
    api = make_client(FakeEngine(max_model_len=400), **SETTINGS)
    job = submit(api, [png("a.png"), png("b.png")]).json()
    assert wait_ended(api, job["id"])["status"] == "succeeded"
    samples = scrape(api)
    assert value(samples, "vlserve_document_pages_total", outcome="succeeded") == 2
    assert value(samples, "vlserve_document_page_duration_seconds_count") == 2


@pytest.fixture
def keyed(tmp_path):
    with serving(tmp_path) as client:
        yield client


def test_per_key_counters_with_auth_on_and_metrics_need_the_metrics_scope(keyed):
    chat_id, chat_headers = new_key(keyed, "app", scopes=("chat",))
    _, ops_headers = new_key(keyed, "prometheus", scopes=("metrics",))
    assert keyed.get("/metrics", headers=chat_headers).status_code == 403
    assert keyed.get("/metrics").status_code == 401
    response = keyed.post(CHAT, headers=chat_headers, json={"messages": [{"role": "user", "content": "a b c"}]})
    assert response.status_code == 200
    samples = scrape(keyed, ops_headers)
    assert value(samples, "vlserve_key_requests_total", key_id=chat_id) == 2  # its refused scrape, its chat
    assert value(samples, "vlserve_key_tokens_total", key_id=chat_id) == response.json()["usage"]["total_tokens"]
    assert value(samples, "vlserve_errors_total", code="missing_api_key") == 1  # answered by the auth middleware
    assert value(samples, "vlserve_errors_total", code="insufficient_scope") == 1


def test_no_per_key_series_with_auth_off(client):
    assert ask(client).status_code == 200
    names = {name for name, _ in scrape(client)}
    assert not any(name.startswith("vlserve_key_") for name in names)
