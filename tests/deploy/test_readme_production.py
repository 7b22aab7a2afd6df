"""The production commands of the README and of docs/deployment/index.md match the files: the image tag, the flags
after it, the chart and values."""

from __future__ import annotations

import pytest
import typer.main
import yaml

from tests.deploy.markdown import bash_commands
from tests.deploy.promql import ROOT
from tests.deploy.test_dockerfiles import GPU, args_of, exec_form
from vlserve.cli import app

CHART = ROOT / "deploy" / "helm" / "vlserve"
# (file, heading of its production section)
SECTIONS = [
    (ROOT / "README.md", "## Production"),
    (ROOT / "docs" / "deployment" / "index.md", "## The image, compose and Kubernetes"),
]
sources = pytest.mark.parametrize("source", SECTIONS, ids=["README", "deployment"])


def production_commands(source: tuple) -> list[list[str]]:
    """The shell words of each command in the production section (continuations joined)."""
    path, heading = source
    return bash_commands(path.read_text().split(heading, 1)[1].split("\n## ", 1)[0])


def command(source: tuple, program: str, verb: str) -> list[str]:
    (found,) = [words for words in production_commands(source) if words[:2] == [program, verb]]
    return found


@sources
def test_docker_build_and_run_use_the_gpu_dockerfile_and_the_charts_image_tag(source):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    tag = f"vlserve:{chart['appVersion']}"
    build = command(source, "docker", "build")
    assert build[build.index("-f") + 1] == "deploy/Dockerfile" and build[build.index("-t") + 1] == tag
    run = command(source, "docker", "run")
    assert tag in run and "--gpus" in run
    assert "8080:8080" in run and "/models:/models:ro" in run
    assert yaml.safe_load((CHART / "values.yaml").read_text())["image"]["tag"] == chart["appVersion"]


@sources
def test_the_flags_after_the_image_are_ones_vlserve_serve_takes_on_the_images_entrypoint(source):
    run = command(source, "docker", "run")
    entrypoint = exec_form(args_of(GPU, "ENTRYPOINT")[-1])
    after_image = run[next(i for i, word in enumerate(run) if word.startswith("vlserve:")) + 1 :]
    serve = typer.main.get_command(app).commands["serve"]
    with serve.make_context("serve", entrypoint[2:] + after_image) as context:  # parses, runs nothing
        params = context.params
    assert params["engine"] == "vllm" and params["port"] == 8080
    assert str(params["model"]).startswith("/models/")


@sources
def test_helm_install_names_the_chart_and_a_values_file_that_exist(source):
    install = command(source, "helm", "install")
    chart = ROOT / install[3]
    assert (chart / "Chart.yaml").is_file(), install
    assert (ROOT / install[install.index("-f") + 1]).is_file(), install
