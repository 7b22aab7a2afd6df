"""Every `helm install` and `helm upgrade` in the docs renders, as written, into valid objects that do what it says.

The commands are read from docs/deployment/kubernetes.md, docs/deployment/index.md and the README in order;
`--set` goes through Helm's own parser, `--reuse-values` starts from what the same release was given before, and
a flag this test does not know fails it, so the docs cannot drift from the chart unnoticed.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest

from tests.deploy.helm import CHART, by_kind, render, validate
from tests.deploy.markdown import bash_commands
from tests.deploy.promql import ROOT

helm_python = pytest.importorskip("helm_python")
KUBERNETES = ROOT / "docs" / "deployment" / "kubernetes.md"
DOCS = (KUBERNETES, ROOT / "docs" / "deployment" / "index.md", ROOT / "README.md")
VALUED = {
    "-n": "namespace",
    "--namespace": "namespace",
    "-f": "files",
    "--values": "files",
    "--set": "sets",
    "--timeout": "timeout",  # how long Helm waits for hooks (the pull Job): nothing to render
}
SWITCHES = {"--reuse-values", "--create-namespace"}


def commands(text: str, program: str) -> list[list[str]]:
    """The shell words of each `program` command in the text's bash blocks."""
    return [words for words in bash_commands(text) if words[0] == program]


def helm_command(words: list[str]) -> dict[str, Any]:
    """verb, release, chart, namespace, values files, --set expressions, reuse: what the test renders."""
    command: dict[str, Any] = {
        "verb": words[1],
        "files": [],
        "sets": [],
        "namespace": "default",
        "reuse": False,
        "timeout": None,
    }
    positional = []
    rest = iter(words[2:])
    for word in rest:
        if word in VALUED:
            value = next(rest)
            key = VALUED[word]
            command[key] = command[key] + [value] if isinstance(command[key], list) else value
        elif word in SWITCHES:
            command["reuse"] = command["reuse"] or word == "--reuse-values"
        elif word.startswith("-"):
            raise AssertionError(f"{shlex.join(words)}: a flag this test does not know: {word}")
        else:
            positional.append(word)
    command["release"], chart = positional
    assert ROOT / chart == CHART, f"{shlex.join(words)}: the chart is deploy/helm/vlserve"
    return command


def merged(base: dict, *layers: dict) -> dict:
    """Helm's order: later maps merge into earlier ones key by key; anything else replaces."""
    out = dict(base)
    for layer in layers:
        for key, value in layer.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def rendered_commands() -> list[tuple[str, dict, list[dict]]]:
    """(command line, values, objects) of every documented helm install/upgrade, release by release."""
    out = []
    with helm_python.Chart.load(CHART) as chart:
        for doc in DOCS:
            given: dict[str, dict] = {}
            for words in commands(doc.read_text(), "helm"):
                if words[1] not in ("install", "upgrade"):
                    continue
                command = helm_command(words)
                base = given.get(command["release"], {}) if command["reuse"] else {}
                files = [helm_python.values_from_yaml((ROOT / path).read_text()) for path in command["files"]]
                values = merged(base, *files, *(helm_python.parse_set_string(s) for s in command["sets"]))
                given[command["release"]] = values
                objects = render(chart, values, release=command["release"], namespace=command["namespace"])
                out.append((shlex.join(words), values, objects))
    return out


@pytest.fixture(scope="module")
def documented() -> list[tuple[str, dict, list[dict]]]:
    return rendered_commands()


def test_the_docs_install_every_values_file_and_the_readme_one(documented):
    lines = [line for line, _, _ in documented]
    assert any(line.startswith("helm install vl deploy/helm/vlserve") for line in lines)
    assert sum("canary.enabled=true" in line for line in lines) == 1
    assert len(lines) >= 6, lines


def test_every_documented_command_renders_objects_the_api_accepts(documented):
    for line, _, objects in documented:
        assert by_kind(objects, "Deployment"), line
        for obj in objects:
            try:
                validate(obj, "1.30.0")
            except Exception as exc:  # noqa: BLE001 - say which command and object
                raise AssertionError(f"{line}: {obj['kind']} {obj['metadata']['name']}: {exc}") from None


def test_the_canary_takes_the_share_the_docs_give_it_and_the_stable_release_none(documented):
    weights = {}
    for line, values, objects in documented:
        annotations = (
            by_kind(objects, "Ingress")[0]["metadata"].get("annotations", {}) if by_kind(objects, "Ingress") else {}
        )
        if values.get("canary", {}).get("enabled"):
            weights[line] = annotations["nginx.ingress.kubernetes.io/canary-weight"]
        else:
            assert "nginx.ingress.kubernetes.io/canary" not in annotations, line
    assert sorted(weights.values()) == ["10", "50"], weights


def test_the_names_the_docs_use_with_kubectl_are_the_releases_objects(documented):
    text = KUBERNETES.read_text()
    _, _, first = next(d for d in documented if d[0].startswith("helm install vl deploy/helm/vlserve -n llm"))
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in first}
    for words in commands(text, "kubectl"):
        line = " ".join(words)
        for kind, name in re.findall(r"\b(secret|deploy|svc)[ /](vl-[a-z-]+)", line):
            kind = {"secret": "Secret", "deploy": "Deployment", "svc": "Service"}[kind]
            assert (kind, name) in names, f"{line}: no {kind} {name} in the release"
    (service,) = [s for s in by_kind(first, "Service") if s["metadata"]["name"] == "vl-vlserve"]
    assert re.search(rf"svc/vl-vlserve 8080:{service['spec']['ports'][0]['port']}\b", text)
