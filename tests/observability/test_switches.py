"""VLSERVE_METRICS and VLSERVE_ACCESS_LOG turn the metrics and the access line off (as vLLM's
--disable-log-stats / --disable-log-requests); the API itself answers as before."""

from __future__ import annotations

import logging

from prometheus_client.parser import text_string_to_metric_families

HI = {"messages": [{"role": "user", "content": "hello there"}]}


def counted_requests(client) -> float:
    """vlserve_requests_total summed over its labels, read from the app's own registry (no route needed)."""
    text = client.app.state.vlserve.metrics.exposition().decode()
    families = text_string_to_metric_families(text)
    return sum(s.value for f in families for s in f.samples if s.name == "vlserve_requests_total")


def test_metrics_off_has_no_route_and_counts_nothing(make_client) -> None:
    client = make_client(metrics=False)
    assert client.post("/v1/chat/completions", json=HI).status_code == 200
    reply = client.get("/metrics")
    assert reply.status_code == 404 and reply.json()["error"]["type"] == "not_found_error"
    assert counted_requests(client) == 0


def test_metrics_on_serves_the_route_and_counts(make_client) -> None:
    client = make_client()
    assert client.post("/v1/chat/completions", json=HI).status_code == 200
    assert client.get("/metrics").status_code == 200
    assert counted_requests(client) >= 1


def test_access_log_off_writes_no_access_line(make_client, caplog) -> None:
    on, off = make_client(), make_client(access_log=False)
    with caplog.at_level(logging.INFO, logger="vlserve.access"):
        assert on.post("/v1/chat/completions", json=HI).status_code == 200
        lines = [r for r in caplog.records if r.name == "vlserve.access"]
        assert len(lines) == 1 and "POST /v1/chat/completions 200" in lines[0].getMessage()
        caplog.clear()
        assert off.post("/v1/chat/completions", json=HI).status_code == 200
        assert off.get("/health/live").status_code == 200
        assert [r for r in caplog.records if r.name == "vlserve.access"] == []
