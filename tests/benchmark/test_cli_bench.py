"""`vlserve bench` on the command line: the table, the JSON and PNG it writes, --compare, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.benchmark.timed_server import Timing, serve_timed
from tests.e2e.server import free_port
from vlserve.cli import app


def invoke(*args: str, env: dict[str, str] | None = None):
    environment = {"VLSERVE_API_KEY": "", "OPENAI_API_KEY": "", "COLUMNS": "80", **(env or {})}
    return CliRunner().invoke(app, ["bench", *args], env=environment)


def written(out: Path) -> tuple[dict, Path]:
    (json_path,) = out.glob("bench-*.json")
    (png_path,) = out.glob("bench-*.png")
    return json.loads(json_path.read_text()), png_path


def test_bench_prints_the_table_and_writes_json_and_a_png(tmp_path: Path) -> None:
    timing = Timing(first=0.1, gap=0.02, tokens=5, image_tokens=True)
    with serve_timed(timing) as url:
        result = invoke(
            url, "--concurrency", "1,2", "--requests", "4", "--workload", "text,photo", "--out", str(tmp_path)
        )
    assert result.exit_code == 0, result.output
    assert "c=1" in result.stdout and "c=2" in result.stdout and "4/4" in result.stdout
    assert "prompt tokens per request 100, of which image tokens 64" in result.stdout
    data, png = written(tmp_path)
    assert data["config"]["levels"] == [1, 2] and data["config"]["api_key"] is None
    (endpoint,) = data["endpoints"]
    assert endpoint["model"] == "timed-model"
    level = endpoint["levels"][0]
    assert level["ok"] == 4 and level["output_tokens"] == 20 and level["errors"] == {}
    assert 0.1 <= level["ttft"]["p50"] < 0.25 and 0.018 <= level["itl"]["p50"] < 0.05
    assert len(level["records"]) == 4 and level["records"][0]["output_tokens"] == 5
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width >= 800
        image.verify()


def test_compare_prints_ratios_and_keeps_them(tmp_path: Path) -> None:
    fast, slow = Timing(first=0.05, gap=0.02, tokens=5), Timing(first=0.05, gap=0.04, tokens=5)
    with serve_timed(fast) as a, serve_timed(slow) as b:
        result = invoke(a, "--compare", b, "--concurrency", "1", "--requests", "3", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "A÷B c=1" in result.stdout and "A: http://127.0.0.1" in result.stdout
    data, _ = written(tmp_path)
    (ratios,) = data["ratios_a_over_b"]
    assert 0.35 < ratios["itl_p50"] < 0.75
    assert ratios["output_tokens_per_s"] > 1.2


def test_the_api_key_is_sent_from_the_environment_and_never_written(tmp_path: Path) -> None:
    timing = Timing(first=0.01, gap=0.005, tokens=2, key="sk-right")
    with serve_timed(timing) as url:
        result = invoke(
            url, "--concurrency", "1", "--requests", "2", "--out", str(tmp_path), env={"OPENAI_API_KEY": "sk-right"}
        )
    assert result.exit_code == 0, result.output
    data, _ = written(tmp_path)
    assert data["config"]["api_key"] == "set" and "sk-right" not in json.dumps(data)


def one_line_error(result, exit_code: int, *needles: str) -> None:
    assert result.exit_code == exit_code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unreachable_url_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    one_line_error(invoke(f"127.0.0.1:{port}", "--out", str(tmp_path)), 1, f"cannot reach http://127.0.0.1:{port}/v1")


@pytest.mark.parametrize(
    ("env", "needle"), [({}, "needs an API key (401)"), ({"VLSERVE_API_KEY": "sk-bad"}, "refused the API key (401)")]
)
def test_a_missing_or_wrong_key_is_one_line(tmp_path: Path, env: dict, needle: str) -> None:
    with serve_timed(Timing(key="sk-right")) as url:
        one_line_error(invoke(url, "--out", str(tmp_path), env=env), 1, needle, "--api-key")


def test_a_url_that_is_not_an_openai_api_is_one_line(tmp_path: Path) -> None:
    with serve_timed(Timing(not_openai=True)) as url:
        one_line_error(invoke(url, "--out", str(tmp_path)), 1, "does not look like an OpenAI-compatible API")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--concurrency", "1,x"], "--concurrency: 'x' is not a whole number"),
        (["--concurrency", "0"], "--concurrency: '0' is out of range"),
        (["--rate", "fast"], "--rate: 'fast' is not a number"),
        (["--rate", "2", "--concurrency", "1"], "not both"),
        (["--workload", "video"], "unknown workload 'video'"),
        (["--requests", "0"], "--requests 0 is too small"),
        (["--baseline", "fancy"], "the only baseline is naive"),
    ],
)
def test_bad_options_are_one_line(args: list[str], needle: str) -> None:
    one_line_error(invoke("http://127.0.0.1:9", *args), 2, needle)


@pytest.mark.parametrize(("model", "needle"), [(None, "needs --model DIR"), ("/nonexistent/ckpt", "has none")])
def test_the_naive_baseline_needs_a_checkpoint_directory(model: str | None, needle: str) -> None:
    timing = Timing()
    args = ["--baseline", "naive"] + (["--model", model] if model else [])
    with serve_timed(timing) as url:
        one_line_error(invoke(url, *args), 1, needle)
    assert timing.bodies == []  # refused before any load


def test_help_fits_80_columns() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert all(len(line) <= 80 for line in result.output.splitlines())
    for option in ("--concurrency", "--rate", "--compare", "--baseline", "--ignore-eos", "--workload", "--out"):
        assert option in result.output
    wide = invoke("--help", env={"COLUMNS": "200"}).output
    for line in wide.splitlines():
        if any(f" {o} " in line for o in ("--model", "--concurrency", "--rate", "--requests", "--duration", "--out")):
            assert "[default: " in line, line


def test_the_naive_baseline_runs_the_checkpoint_in_process_and_gives_the_ratio(
    tmp_path: Path, demo_model: Path
) -> None:
    args = ["--baseline", "naive", "--model", str(demo_model), "--concurrency", "1", "--requests", "2"]
    with serve_timed(Timing(first=0.01, gap=0.005, tokens=4)) as url:
        result = invoke(url, *args, "--max-tokens", "4", "--ignore-eos", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "naive" in result.stdout and "naive script:" in result.stdout
    data, _ = written(tmp_path / "out")
    baseline = data["baseline"]
    (level,) = baseline["levels"]
    assert level["ok"] == 2 and level["output_tokens"] == 8  # --ignore-eos: min_new_tokens = max_new_tokens
    assert level["prompt_tokens_mean"] > 100  # the chart's image tokens are in the prompt
    assert baseline["ratio_at_first_level"] == pytest.approx(
        data["endpoints"][0]["levels"][0]["output_tokens_per_s"] / level["output_tokens_per_s"]
    )
