"""The alert rules and the dashboard's queries, checked by Prometheus's own promtool."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.promql import ALERTS, ALERTS_TEST, ROOT, alert_rules, as_promql, dashboard, dashboard_exprs
from vlserve import errors

# 5xx codes the error-ratio alert leaves out on purpose: draining after SIGTERM, refusing connections when full.
NOT_FAILURES = {"shutting_down", "too_many_connections", "decode_budget_exhausted"}  # draining, overload


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_alert_rules_pass_promtool_check(promtool):
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_the_alert_unit_tests_pass(promtool):
    result = run(promtool, "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_threshold_fails_the_unit_tests(promtool, tmp_path):
    """The unit tests do test the thresholds: an error-ratio alert at 20 % no longer fires for 10 % errors."""
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text().replace(") > 0.05", ") > 0.2"))
    (tmp_path / "alerts_test.yml").write_text(ALERTS_TEST.read_text())
    result = run(promtool, "test", "rules", str(tmp_path / "alerts_test.yml"))
    assert result.returncode != 0
    assert "VlserveHighErrorRate" in result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_it_and_one_that_does_not():
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    for rule in alert_rules():
        assert {True, False} <= set(cases.get(rule["alert"], [])), rule["alert"]


def test_every_alert_waits_names_its_severity_and_says_what_to_do():
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_the_error_ratio_counts_every_server_error_code_and_no_client_one():
    rule = next(r for r in alert_rules() if r["alert"] == "VlserveHighErrorRate")
    counted = set(re.search(r'code=~"([^"]+)"', rule["expr"]).group(1).split("|"))
    assert counted == server_error_codes() - NOT_FAILURES
    shown = next(expr for where, expr in dashboard_exprs(dashboard()) if "code=~" in expr)  # the error ratio panel
    assert set(re.search(r'code=~"([^"]+)"', shown).group(1).split("|")) == counted


def server_error_codes() -> set[str]:
    """Every ``code`` a 5xx error can carry, read from the source: the ``code`` of each subclass of
    ``ServerError`` (wherever it is defined), and each ``code=`` passed to one."""
    trees = [ast.parse(path.read_text()) for path in Path(errors.__file__).parent.rglob("*.py")]
    classes = [node for tree in trees for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    server = {"ServerError"}
    while grown := {c.name for c in classes if c.name not in server and server & {name_of(b) for b in c.bases}}:
        server |= grown
    codes = {errors.ServerError.code}
    for node in classes:
        if node.name in server:
            for statement in node.body:
                if isinstance(statement, ast.Assign) and [name_of(t) for t in statement.targets] == ["code"]:
                    codes.add(statement.value.value)
    for node in (n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.Call)):
        if name_of(node.func) in server:
            codes |= {k.value.value for k in node.keywords if k.arg == "code" and isinstance(k.value, ast.Constant)}
    return codes


def name_of(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    exprs = dashboard_exprs(dashboard())
    rules = [{"record": f"dashboard:query_{n}", "expr": as_promql(expr)} for n, (_, expr) in enumerate(exprs)]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(tmp_path / "queries.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
