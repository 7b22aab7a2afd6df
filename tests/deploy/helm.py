"""The Helm chart under test: rendered with Helm's own engine, and its objects checked against their schemas.

Rendering goes through helm-python-sdk, which binds Helm v4's Go SDK (a shared library in the wheel) and works
offline; ``lookup`` returns nothing there, as on a first install. Built-in kinds are validated by
kubernetes-validate with its bundled API schemas; the CRDs the chart uses (ServiceMonitor, PrometheusRule,
ScaledObject) by their OpenAPI schemas vendored in tests/deploy/schemas/ (README.md there), made strict
like the built-in ones: a field the schema does not name is an error, as the API server would prune it.
"""

from __future__ import annotations

import copy
import json
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.deploy.promql import ROOT

CHART = ROOT / "deploy" / "helm" / "vlserve"
VALUES = ROOT / "deploy" / "helm" / "values"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrule_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
}
SWITCHES = {"--expert-parallel", "--no-expert-parallel"}  # the only flags of `vlserve serve` without a value
# The chart's kubeVersion floor, and the newest API kubernetes-validate knows.
KUBE_VERSIONS = ("1.30.0", "1.37.0")


def values_file(name: str) -> dict[str, Any]:
    return yaml.safe_load((VALUES / f"{name}.yaml").read_text())


def render(chart, values: dict[str, Any] | None = None, *, release: str = "vl", namespace: str = "ml") -> list[dict]:
    """The objects ``helm template`` would print for these values (NOTES.txt and empty templates left out)."""
    manifests = chart.render(values or {}, name=release, namespace=namespace)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def notes(chart, values: dict[str, Any], *, release: str = "vl", namespace: str = "ml") -> str:
    manifests = chart.render(values, name=release, namespace=namespace)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    (found,) = by_kind(objects, kind)
    return found


def server(objects: list[dict]) -> dict:
    """The vlserve Deployment (not the in-cluster Redis one)."""
    (found,) = [
        d for d in by_kind(objects, "Deployment") if d["spec"]["template"]["spec"]["containers"][0]["name"] == "vlserve"
    ]
    return found


def settings(objects: list[dict]) -> dict[str, str]:
    """The data of the ConfigMap the server's env comes from (not the dashboard's)."""
    (found,) = [c for c in by_kind(objects, "ConfigMap") if not c["metadata"]["name"].endswith("-dashboard")]
    return found["data"]


def container(objects: list[dict]) -> dict:
    return server(objects)["spec"]["template"]["spec"]["containers"][0]


def flags(args: list[str]) -> dict[str, str | bool]:
    """``--flag value`` pairs of a `vlserve serve` command line; the on/off flags map to True."""
    out: dict[str, str | bool] = {}
    words = iter(arg for arg in args if arg != "serve")
    for arg in words:
        if arg.startswith("--"):
            out[arg] = True if arg in SWITCHES else next(words)
    return out


def vllm_args(args: list[str]) -> list[str]:
    """The arguments --vllm-args carries, as vlserve splits them."""
    found = flags(args).get("--vllm-args")
    return shlex.split(found) if isinstance(found, str) else []


@cache
def crd_schema(api_version: str, kind: str) -> dict:
    return strict(json.loads((SCHEMAS / CRD_SCHEMAS[api_version, kind]).read_text()))


def strict(schema: dict) -> dict:
    """A copy where every object schema with named properties refuses the others."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
            if node.get("properties") and not open_ended:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def validate(obj: dict, kube_version: str) -> None:
    """Raise if ``obj`` is not a valid object of its kind (unknown fields included)."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        jsonschema.Draft202012Validator(crd_schema(*key)).validate(obj)
        return
    import kubernetes_validate  # here: test_helm.py skips (or fails on CI) before, when the test extra is missing

    kubernetes_validate.validate(obj, kube_version, strict=True)
