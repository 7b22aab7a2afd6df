"""deploy/Dockerfile (GPU, vLLM) and deploy/Dockerfile.cpu (laptop demo): hadolint, and what a user relies on."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main

from tests.deploy.promql import ROOT
from vlserve.api.health import router as health_router
from vlserve.cli import app
from vlserve.settings import Settings

GPU = ROOT / "deploy" / "Dockerfile"
CPU = ROOT / "deploy" / "Dockerfile.cpu"
BOTH = pytest.mark.parametrize("dockerfile", [GPU, CPU], ids=["gpu", "cpu"])
WEIGHTS = re.compile(r"(^|/)models?(/|$)|\.(safetensors|bin|pt|pth|gguf|ckpt)$", re.IGNORECASE)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def args_of(path: Path, word: str) -> list[str]:
    return [rest for instruction, rest in instructions(path) if instruction == word]


def exec_form(rest: str) -> list[str]:
    assert rest.startswith("["), f"not exec form: {rest}"
    return json.loads(rest)


def env(path: Path) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for rest in args_of(path, "ENV"):
        for item in shlex.split(rest):
            key, _, value = item.partition("=")
            pairs[key] = value
    return pairs


def hadolint() -> str:
    path = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail("hadolint is not installed: it is in the test extra (pip install -e '.[test]')")
    return path


@BOTH
def test_hadolint_passes(dockerfile):
    result = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile.relative_to(ROOT))], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


@BOTH
def test_the_server_runs_as_a_non_root_user(dockerfile):
    users = args_of(dockerfile, "USER")
    assert users, "no USER: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"


@BOTH
def test_the_healthcheck_asks_for_readiness_on_the_served_port(dockerfile):
    (check,) = args_of(dockerfile, "HEALTHCHECK")
    assert "/health/ready" in {route.path for route in health_router.routes}
    assert "http://127.0.0.1:8080/health/ready" in check
    command = exec_form(check[check.index("CMD") + 3 :].strip())
    assert command[0] in {"python", "python3"}, "Python is in both base images for certain; curl is not"


@BOTH
def test_only_vlserves_port_is_exposed(dockerfile):
    assert args_of(dockerfile, "EXPOSE") == ["8080"]
    entrypoint = exec_form(args_of(dockerfile, "ENTRYPOINT")[-1])
    assert entrypoint[:2] == ["vlserve", "serve"]
    assert entrypoint[entrypoint.index("--port") + 1] == "8080"
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"


@BOTH
def test_the_entrypoint_flags_and_env_names_exist(dockerfile):
    serve = typer.main.get_command(app).commands["serve"]
    known = {opt for param in serve.params for opt in param.opts}
    flags = [arg for arg in exec_form(args_of(dockerfile, "ENTRYPOINT")[-1]) if arg.startswith("--")]
    assert set(flags) <= known
    fields = {f"VLSERVE_{name.upper()}" for name in Settings.model_fields}
    assert {key for key in env(dockerfile) if key.startswith("VLSERVE_")} <= fields


@BOTH
def test_no_weights_are_copied_into_the_image(dockerfile):
    assert not args_of(dockerfile, "ADD"), "ADD can fetch URLs and unpack archives: COPY only"
    for rest in args_of(dockerfile, "COPY"):
        sources = [part for part in rest.split() if not part.startswith("--")][:-1]
        for source in sources:
            assert not WEIGHTS.search(source), f"COPY {source} looks like model weights"
            path = ROOT / source
            if path.is_dir():
                heavy = [p for p in path.rglob("*") if p.is_file() and p.stat().st_size > 50_000_000]
                assert not heavy, f"COPY {source} carries large files: {heavy}"
    assert env(dockerfile)["VLSERVE_DATA_DIR"] == "/data"
    assert any("/data" in rest for rest in args_of(dockerfile, "VOLUME"))


@BOTH
def test_the_base_image_is_pinned_to_an_exact_version(dockerfile):
    (base,) = args_of(dockerfile, "FROM")
    assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", base), base
    assert "latest" not in base
    assert "digest" in dockerfile.read_text(), "say how to pin the digest in production"


def test_the_gpu_image_runs_the_vllm_version_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = [req for req in project["optional-dependencies"]["vllm"] if req.startswith("vllm==")]
    (base,) = args_of(GPU, "FROM")
    assert base.split("@")[0] == f"vllm/vllm-openai:v{pin.removeprefix('vllm==')}"


def test_the_gpu_image_takes_weights_from_a_volume_and_serves_with_vllm():
    entrypoint = exec_form(args_of(GPU, "ENTRYPOINT")[-1])
    assert entrypoint[entrypoint.index("--engine") + 1] == "vllm"
    assert any("/models" in rest for rest in args_of(GPU, "VOLUME"))
    assert env(GPU)["VLSERVE_MODEL"].startswith("/models/")


def test_the_cpu_image_installs_the_torch_the_makefile_pins_from_the_cpu_index():
    makefile_torch = re.search(r"^TORCH \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    runs = " ".join(args_of(CPU, "RUN"))
    assert f"--index-url https://download.pytorch.org/whl/cpu {makefile_torch}" in runs


def test_the_cpu_image_serves_the_demo_model_it_builds_without_network():
    model = env(CPU)["VLSERVE_MODEL"]
    assert f"vlserve demo build --out {model}" in " ".join(args_of(CPU, "RUN"))
    assert env(CPU)["HF_HUB_OFFLINE"] == "1"


@BOTH
def test_both_images_install_from_the_lock_without_resolving(dockerfile):
    runs = " ".join(args_of(dockerfile, "RUN"))
    assert "pip install --no-deps -r" in runs
    assert "pip install --no-deps ." in runs
    assert "pip check" in runs


def test_the_build_context_holds_only_what_the_dockerfiles_copy():
    """`.dockerignore` leaves out everything (.venv, .git, build/: gigabytes a build would otherwise upload) but
    the COPY sources of both files, which it lets in one by one."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    copied = {src for path in (GPU, CPU) for args in args_of(path, "COPY") for src in args.split()[:-1]}
    assert copied and {f"!{src}" for src in copied} <= set(patterns), copied
