"""The README's production commands match the files: the image tag, the flags after it, the chart and values."""

from __future__ import annotations

import typer.main
import yaml

from tests.deploy.markdown import bash_commands
from tests.deploy.promql import ROOT
from tests.deploy.test_dockerfiles import GPU, args_of, exec_form
from vlserve.cli import app

README = ROOT / "README.md"
CHART = ROOT / "deploy" / "helm" / "vlserve"


def production_commands() -> list[list[str]]:
    """The shell words of each command in the README's production section (continuations joined)."""
    return bash_commands(README.read_text().split("## Production", 1)[1].split("\n## ", 1)[0])


def command(program: str, verb: str) -> list[str]:
    (found,) = [words for words in production_commands() if words[:2] == [program, verb]]
    return found


def test_docker_build_and_run_use_the_gpu_dockerfile_and_the_charts_image_tag():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    tag = f"vlserve:{chart['appVersion']}"
    build = command("docker", "build")
    assert build[build.index("-f") + 1] == "deploy/Dockerfile" and build[build.index("-t") + 1] == tag
    run = command("docker", "run")
    assert tag in run and "--gpus" in run
    assert "8080:8080" in run and "/models:/models:ro" in run
    assert yaml.safe_load((CHART / "values.yaml").read_text())["image"]["tag"] == chart["appVersion"]


def test_the_flags_after_the_image_are_ones_vlserve_serve_takes_on_the_images_entrypoint():
    run = command("docker", "run")
    entrypoint = exec_form(args_of(GPU, "ENTRYPOINT")[-1])
    after_image = run[next(i for i, word in enumerate(run) if word.startswith("vlserve:")) + 1 :]
    serve = typer.main.get_command(app).commands["serve"]
    with serve.make_context("serve", entrypoint[2:] + after_image) as context:  # parses, runs nothing
        params = context.params
    assert params["engine"] == "vllm" and params["port"] == 8080
    assert str(params["model"]).startswith("/models/")


def test_helm_install_names_the_chart_and_a_values_file_that_exist():
    install = command("helm", "install")
    chart = ROOT / install[3]
    assert (chart / "Chart.yaml").is_file(), install
    assert (ROOT / install[install.index("-f") + 1]).is_file(), install
