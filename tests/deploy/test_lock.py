"""deploy/requirements.lock: the exact pins both images install (deploy/lock.py writes it)."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.promql import ROOT

LOCK = ROOT / "deploy" / "requirements.lock"


def pins() -> dict[str, str]:
    lines = [line.strip() for line in LOCK.read_text().splitlines()]
    found: dict[str, str] = {}
    for line in lines:
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and Version(version), f"not an exact == pin: {line}"
        assert canonicalize_name(name) not in found, f"pinned twice: {name}"
        found[canonicalize_name(name)] = version
    return found


def dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(dep) for dep in project["dependencies"]]


def test_every_line_is_an_exact_pin():
    assert len(pins()) > 20


def test_the_lock_covers_every_runtime_dependency_within_its_range():
    locked = pins()
    for req in dependencies():
        name = canonicalize_name(req.name)
        if name == "torch":  # each image brings its own build: the CPU wheel, or vLLM's CUDA one
            assert name not in locked
            continue
        assert name in locked, f"{req.name} is in pyproject but not in the lock"
        assert req.specifier.contains(locked[name], prereleases=True), f"{name}=={locked[name]} is outside {req}"


def test_the_extras_dependencies_asks_for_are_locked():
    locked = pins()
    assert {"uvloop", "httptools", "watchfiles", "websockets"} <= set(locked)  # uvicorn[standard]
    assert "psycopg-binary" in locked  # psycopg[binary]


def test_the_images_carry_the_modelscope_client_the_helm_pull_job_runs():
    locked = pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["optional-dependencies"]["modelscope"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in locked and req.specifier.contains(locked[name]), f"{dep} is not locked within its range"
