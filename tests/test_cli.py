"""The `vlserve` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.support.images import chart, encode
from vlserve.cli import app
from vlserve.demo.evaluate import VALUES_SPLIT

runner = CliRunner()


@pytest.fixture
def chart_file(tmp_path):
    path = tmp_path / "chart.png"
    path.write_bytes(encode(chart(9)))
    return path


def test_demo_build_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "demo model ready" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen3VLMoeForConditionalGeneration"]
    assert (out / "model.safetensors").stat().st_size > 1_000_000


@pytest.mark.e2e
def test_ask_against_a_running_server(server, chart_file):
    result = subprocess.run(
        [sys.executable, "-m", "vlserve.cli", "ask", str(chart_file), "--prompt", "What values?", "--url", server.url,
         "--max-tokens", "8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_ask_local_runs_the_model_in_process(demo_model, chart_file):
    result = runner.invoke(
        app,
        [
            "ask",
            str(chart_file),
            "--prompt",
            "What values?",
            "--local",
            "--model",
            str(demo_model),
            "--max-tokens",
            "6",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip()


def test_ask_reports_a_server_error_cleanly(server, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = runner.invoke(app, ["ask", str(bad), "--prompt", "x", "--url", server.url])
    assert result.exit_code == 1
    assert "HTTP 400" in result.output and "not a recognised image" in result.output


def test_ask_without_a_server_says_how_to_start_one(chart_file):
    result = runner.invoke(app, ["ask", str(chart_file), "--prompt", "x", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "vlserve serve" in result.output


def test_serve_refuses_a_directory_that_is_not_a_checkpoint(tmp_path):
    result = runner.invoke(app, ["serve", "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a checkpoint directory" in result.output


def test_serve_with_the_vllm_engine_but_no_vllm_says_how_to_install_it_in_one_line(demo_model, monkeypatch):
    monkeypatch.setenv("VLSERVE_VLLM_EXECUTABLE", "vllm-is-not-installed-here")
    result = runner.invoke(app, ["serve", "--model", str(demo_model), "--engine", "vllm"])
    assert result.exit_code == 2
    assert "pip install 'vlserve[vllm]'" in result.output and "vLLM 0.32.0" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2


def test_serve_explains_engine_mistakes_in_one_line():
    missing = runner.invoke(app, ["serve", "--engine", "remote"])
    assert missing.exit_code == 2 and "needs at least one upstream" in missing.output
    stray = runner.invoke(app, ["serve", "--upstream", "http://127.0.0.1:9/v1"])
    assert stray.exit_code == 2 and "add --engine remote" in stray.output
    wrong = runner.invoke(app, ["serve", "--engine", "remote", "--upstream", "vllm:8000"])
    assert wrong.exit_code == 2 and "must start with http://" in wrong.output
    unknown = runner.invoke(app, ["serve", "--engine", "tensorrt"])
    assert unknown.exit_code == 2 and "engine" in unknown.output
    assert "Traceback" not in missing.output + stray.output + wrong.output + unknown.output


def test_demo_train_writes_a_trained_checkpoint_with_progress(tmp_path):
    out = tmp_path / "trained"
    result = runner.invoke(app, ["demo", "train", "--out", str(out), "--steps", "2", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "trained model written to" in result.output
    assert json.loads((out / "vlserve_demo.json").read_text())["kind"] == "trained"


@pytest.mark.e2e
def test_demo_eval_scores_every_question_type_and_check_fails_below_target(server):
    result = runner.invoke(app, ["demo", "eval", "--url", server.url, "--n", "1", "--check"])
    assert result.exit_code == 1, result.output  # the random-weight model cannot read charts
    for name in ("values", "json", "highest", "lowest", "difference", "kind", "json_parses", *VALUES_SPLIT):
        assert name in result.output


@pytest.fixture
def facts_schema(tmp_path):
    path = tmp_path / "facts.json"
    schema = {
        "type": "object",
        "properties": {"kind": {"enum": ["bar", "line"]}, "labelled": {"type": "boolean"}},
        "required": ["kind", "labelled"],
        "additionalProperties": False,
    }
    path.write_text(json.dumps(schema))
    return path


@pytest.mark.e2e
def test_doc_against_a_running_server_writes_schema_valid_pages_with_a_progress_bar(server, facts_schema, tmp_path):
    from tests.support.pdfs import text_pdf

    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(text_pdf(3))
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, "-m", "vlserve.cli", "doc", str(pdf), "--schema", str(facts_schema), "--pages", "2-3",
         "--out", str(out), "--url", server.url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2/2" in result.stderr and f"result written to {out}" in result.stderr
    written = json.loads(out.read_text())
    assert [p["page"] for p in written["pages"]] == [2, 3]
    assert all(p["data"]["kind"] in ("bar", "line") for p in written["pages"])


def test_doc_local_reads_image_pages_in_process(demo_model, facts_schema, chart_file):
    result = runner.invoke(
        app,
        ["doc", str(chart_file), str(chart_file), "--local", "--model", str(demo_model), "--schema", str(facts_schema)],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert printed["status"] == "succeeded" and len(printed["document"]["data"]) == 2


def test_doc_reports_a_refused_upload_cleanly(server, tmp_path):
    bogus = tmp_path / "notes.pdf"
    bogus.write_text("not a pdf at all")
    result = runner.invoke(app, ["doc", str(bogus), "--url", server.url])
    assert result.exit_code == 1
    assert "HTTP 415: file is not a PDF" in result.output
