"""The Grafana dashboard is a valid, importable JSON model: layout, ids, data source and variables."""

from __future__ import annotations

import re

from tests.deploy.promql import DASHBOARD, dashboard, dashboard_exprs, panels

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboard_is_a_grafana_json_model_with_unique_ids_and_uid():
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] == "vlserve-overview" and board["title"] == "vlserve"
    assert board["id"] is None  # Grafana gives it one on import
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), ids
    assert {p["type"] for p in panels(board)} <= {"row", "timeseries", "stat"}


def test_panels_fit_the_24_column_grid_without_overlapping():
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard()):
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells


def test_every_query_goes_to_the_chosen_data_source_and_no_uid_is_hard_coded():
    board = dashboard()
    kinds = {v["name"]: v for v in board["templating"]["list"]}
    assert kinds["datasource"]["type"] == "datasource" and kinds["datasource"]["query"] == "prometheus"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', DASHBOARD.read_text()))
    assert uids == {"${datasource}", "-- Grafana --", "vlserve-overview"}, uids


def test_every_query_follows_the_job_and_instance_variables():
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"], name
        assert variables[name]["datasource"] == DATASOURCE
    for where, expr in dashboard_exprs(board):
        if where.startswith("panel"):
            selectors = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*\{([^}]*)\}", expr)
            assert selectors, f"{where}: {expr}"
            for selector in selectors:
                assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, f"{where}: {expr}"


def test_the_dashboard_shows_what_an_operator_looks_for():
    titles = {p["title"] for p in panels(dashboard())}
    for title in (
        "Requests per second by endpoint and status",
        "Request latency, API endpoints",
        "Time to first token",
        "Time per output token",
        "Tokens per second",
        "Engine load",
        "Queue saturation",
        "Queue wait",
        "Error ratio, API requests",
        "Errors by code",
        "Cache hit rate",
        "GPU utilisation",
        "GPU memory",
        "Document pages per second by outcome",
        "Document page latency",
        "Model ready",
        "Engine stalled",
        "Redis up",
    ):
        assert title in titles, title
    latency = next(p for p in panels(dashboard()) if p["title"] == "Request latency, API endpoints")
    assert [t["legendFormat"] for t in latency["targets"]] == ["P50", "P95", "P99"]
    assert all("histogram_quantile" in t["expr"] for t in latency["targets"])
