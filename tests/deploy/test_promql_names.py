"""Every metric the dashboard and the alerts query is one vlserve exports, and so is every metric the docs list.

The docs' list is the metrics table of docs/observability.md.

The exported names come from scraping the real app over the fake engine, once with auth on and Redis
(per-key counters, vlserve_redis_up, the Redis cache's error counter) and once without (the in-process
cache's entries). The GPU families exist only where NVML finds a GPU; their names come from the module
that exports them.
"""

from __future__ import annotations

import base64
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.fakes import image_message
from tests.deploy.promql import ROOT, all_exprs, dashboard, dashboard_exprs, metric_names
from tests.security.keyed import new_key, serving
from tests.support.images import solid
from tests.support.redis_store import REDIS_URL, redis_prefix
from vlserve.observability.gpu import GPU_METRICS

SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")
PROMETHEUS_OWN = {"up"}  # written by Prometheus for every scrape target


@pytest.fixture
def prefix():
    yield from redis_prefix()


@pytest.fixture
def exported(make_client, prefix, tmp_path) -> set[str]:
    """Family and sample names on /metrics after a few requests, with and without auth and Redis."""
    names: set[str] = set(GPU_METRICS)
    with serving(tmp_path, redis_url=REDIS_URL, redis_prefix=prefix) as client:
        _, headers = new_key(client, scopes=("chat", "metrics"))
        names |= scrape(client, headers)
    names |= scrape(make_client())
    return names


def scrape(client, headers: dict | None = None) -> set[str]:
    image = "data:image/png;base64," + base64.b64encode(solid((64, 48))).decode()
    chat = {"model": "fake-vl", "max_tokens": 4, "temperature": 0}
    headers = headers or {}
    for stream in (False, True):  # answered, then from the response cache or streamed
        body = {**chat, "messages": image_message(image), "stream": stream}
        assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    assert client.post("/v1/chat/completions", json={**body, "model": "nope"}, headers=headers).status_code == 404
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    names = set()
    for family in text_string_to_metric_families(response.text):
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


def is_exported(name: str, exported: set[str]) -> bool:
    bases = {name} | {name.removesuffix(suffix) for suffix in SUFFIXES if name.endswith(suffix)}
    return bool(bases & exported)


def test_metric_names_are_read_from_promql_without_functions_labels_or_keywords():
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{code=~"x|y", le!="1e3"}[5m:1m])))'
        " > 1e3 and on (job) group_left (gpu) b offset 5m unless ignoring (instance) c:rate5m"
        ' / sum without (model) (d{job=~"$job"} > 0) or topk(10, e[$__rate_interval]) * Inf'
    )
    assert metric_names(expr) == {"a_bucket", "b", "c:rate5m", "d", "e"}
    variables = dict(dashboard_exprs(dashboard()))  # label_values(selector, label): the selector is read
    assert variables["variable 'instance'"] == 'vlserve_requests_total{job=~"$job"}'
    assert metric_names(variables["variable 'job'"]) == {"vlserve_requests_total"}


def test_every_metric_the_dashboard_and_the_alerts_query_is_exported(exported):
    used = {name: where for where, expr in all_exprs() for name in metric_names(expr)}
    assert any(name.startswith("vlserve_gpu_") for name in used)  # the tokenizer reads the whole dashboard
    missing = [f"{name} ({where})" for name, where in used.items() if not is_exported(name, exported | PROMETHEUS_OWN)]
    assert not missing, f"queried, but not on /metrics: {sorted(missing)}"


def test_every_metric_in_the_docs_table_is_exported_and_on_the_dashboard(exported):
    listed = documented_metrics()
    assert "vlserve_requests_total" in listed and len(listed) >= 16
    assert not [name for name in listed if not is_exported(name, exported)], "in docs/observability.md, not on /metrics"
    used = {name for _, expr in all_exprs() for name in metric_names(expr)}
    shown = used | {name.removesuffix(suffix) for name in used for suffix in SUFFIXES}
    assert not [name for name in listed if name not in shown], "in docs/observability.md, not on the dashboard"


def documented_metrics() -> list[str]:
    text = (ROOT / "docs" / "observability.md").read_text()
    section = text[text.index("\n## Metrics") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"^\| `(vlserve_[a-z0-9_]+)` \|", section, re.M)
