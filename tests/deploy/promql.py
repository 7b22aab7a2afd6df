"""The deployment files under test, their PromQL expressions, and the metric names those expressions read.

promtool 2.42 cannot print a parsed expression, so :func:`metric_names` tokenises: after dropping
strings, label matchers ``{…}``, ranges ``[…]`` and the label lists of ``by``/``without``/``on``/
``ignoring``/``group_left``/``group_right``, every identifier that is neither a function call nor a
keyword is a metric name. That the expressions are valid PromQL is promtool's to check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "vlserve.json"

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
KEYWORDS |= {"offset", "atan2", "inf", "nan"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(
    r"(?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?:ms|[smhdwy])?)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)
_VARIABLE_QUERY = re.compile(r"^\s*label_values\((?P<expr>.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (Grafana's ``$variables`` allowed)."""
    text = _STRING.sub('""', as_promql(expr))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for token in _TOKEN.finditer(text):
        name = token.group("name")
        if name and not token.group("call") and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def as_promql(expr: str) -> str:
    """A Grafana expression as plain PromQL: interval variables become 5m, the others match anything."""
    return re.sub(r"\$\{?\w+\}?", ".*", re.sub(r"\$__(?:rate_interval|interval|range)\b", "5m", expr))


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> Iterator[dict]:
    """Every panel, those inside collapsed rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(board: dict) -> list[tuple[str, str]]:
    """(where, expression) of every panel query and every query variable's selector."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = _VARIABLE_QUERY.match(query)
            assert match, f"variable {variable['name']}: not a label_values(selector, label) query: {query}"
            found.append((f"variable {variable['name']!r}", match.group("expr")))
    return found


def all_exprs() -> list[tuple[str, str]]:
    """Every PromQL expression of the dashboard and the alert rules."""
    return dashboard_exprs(dashboard()) + [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
