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


def test_a_setting_out_of_range_or_against_another_is_one_line_naming_it(monkeypatch):
    monkeypatch.setenv("VLSERVE_DECODE_BUDGET_PIXELS", "100")
    budget = runner.invoke(app, ["serve"])
    monkeypatch.delenv("VLSERVE_DECODE_BUDGET_PIXELS")
    monkeypatch.setenv("VLSERVE_BODY_TIMEOUT_S", "0")
    timeout = runner.invoke(app, ["serve"])
    for result, says in ((budget, "invalid settings: decode_budget_pixels (100) must be at least max_image_pixels"),
                         (timeout, "invalid settings: body_timeout_s: Input should be greater than 0")):  # fmt: skip
        assert result.exit_code == 2 and result.output.strip().splitlines() == [result.output.strip()]
        assert result.output.startswith(says), result.output


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
    job_id = json.loads(out.read_text())["id"]
    assert f"job {job_id} accepted: {server.url}/v1/documents/{job_id}" in result.stderr
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


# --- one-line errors, checked before anything is uploaded ----------------------------------------

NO_SERVER = "http://127.0.0.1:9"  # nothing listens: an upload attempt would say "cannot reach the server"


def assert_one_line_error(result, exit_code: int, says: str) -> None:
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def pdf_file(tmp_path):
    from tests.support.pdfs import text_pdf

    path = tmp_path / "report.pdf"
    path.write_bytes(text_pdf(1))
    return path


def test_doc_with_a_missing_schema_file_says_so_in_one_line(pdf_file, tmp_path):
    missing = tmp_path / "missing.json"
    result = runner.invoke(app, ["doc", str(pdf_file), "--schema", str(missing), "--url", NO_SERVER])
    assert_one_line_error(result, 2, f"--schema {missing}: no such file")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "is not valid JSON: Expecting property name"),
        ("[1, 2]", "must hold a JSON object"),
        ("[" * 1000 + "]" * 1000, "nests more than 64 levels deep; no server accepts it"),  # not a RecursionError
    ],
)
def test_doc_with_a_schema_that_is_not_a_json_object_says_so_in_one_line(pdf_file, tmp_path, content, says):
    schema = tmp_path / "schema.json"
    schema.write_text(content)
    result = runner.invoke(app, ["doc", str(pdf_file), "--schema", str(schema), "--url", NO_SERVER])
    assert_one_line_error(result, 2, says)


def test_doc_checks_the_output_path_before_uploading(pdf_file, tmp_path):
    result = runner.invoke(app, ["doc", str(pdf_file), "--out", "/nonexistent/x.json", "--url", NO_SERVER])
    assert_one_line_error(result, 2, "--out /nonexistent/x.json: the directory /nonexistent does not exist")
    result = runner.invoke(app, ["doc", str(pdf_file), "--out", str(tmp_path), "--url", NO_SERVER])
    assert_one_line_error(result, 2, "is a directory")


def test_doc_with_a_missing_input_file_says_so_in_one_line(tmp_path):
    result = runner.invoke(app, ["doc", str(tmp_path / "nope.pdf"), "--url", NO_SERVER])
    assert_one_line_error(result, 2, "nope.pdf: no such file")


def test_doc_without_a_server_fails_in_one_line_after_the_checks(pdf_file, facts_schema, tmp_path):
    out = tmp_path / "result.json"
    result = runner.invoke(app, ["doc", str(pdf_file), "--schema", str(facts_schema), "--out", str(out), "--url",
                                 NO_SERVER])  # fmt: skip
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the server" in errors[0] and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.e2e
def test_doc_reports_the_job_id_before_the_first_progress(server, pdf_file):
    import httpx

    from vlserve.documents.client import run_remote
    from vlserve.documents.intake import Submission

    class Seen(Exception):
        pass

    events: list[tuple[str, object]] = []

    def progress(done: int, total: int) -> None:
        events.append(("progress", done))
        raise Seen  # the user walks away after the first report: the job id must already be known

    with pytest.raises(Seen):
        run_remote(server.url, [pdf_file], Submission(), on_progress=progress,
                   on_accepted=lambda job_id: events.append(("accepted", job_id)))  # fmt: skip
    (kind, job_id), *_ = events
    assert kind == "accepted" and [k for k, _ in events] == ["accepted", "progress"]
    status = httpx.get(f"{server.url}/v1/documents/{job_id}", timeout=10)
    assert status.status_code == 200  # a user can come back to it with that id
    httpx.delete(f"{server.url}/v1/documents/{job_id}", timeout=10)  # leave the shared server idle


# --- what the client says when the server refuses -------------------------------------------------


def refusal(status: int, body: object = None, headers: dict[str, str] | None = None):
    import httpx

    request = httpx.Request("POST", "http://127.0.0.1:8080/v1/documents")
    response = httpx.Response(status, json=body, headers=headers, request=request)
    return httpx.HTTPStatusError("refused", request=request, response=response)


def envelope(message: str) -> dict:
    return {"error": {"message": message, "type": "x", "param": None, "code": None}}


def test_client_failures_are_one_line_with_what_to_do():
    import httpx

    from vlserve.client import describe_failure

    no_key = describe_failure(refusal(401, envelope("missing API key")))
    assert no_key.startswith("HTTP 401: missing API key") and "VLSERVE_API_KEY" in no_key
    busy = describe_failure(refusal(429, envelope("queue full"), {"Retry-After": "3"}))
    assert busy == "HTTP 429: queue full (retry after 3 s)"
    assert describe_failure(refusal(502, "not an envelope")) == "HTTP 502"
    assert "did not answer in time" in describe_failure(httpx.ReadTimeout("slow"))
    assert describe_failure(PermissionError(13, "Permission denied", "/root/x.png")) == "permission denied: /root/x.png"
    assert describe_failure(ValueError("two\nlines")) == "two lines"


# --- --help shows every default ---------------------------------------------------------------------


def option_lines(command: list[str]) -> list[str]:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line.lstrip("│ ").startswith("--")]


def test_serve_help_shows_every_options_default_from_the_settings():
    from vlserve.settings import Settings

    lines = [line for line in option_lines(["serve"]) if "--help" not in line]
    assert len(lines) >= 15
    for line in lines:
        assert "[default: " in line, line
    text = "\n".join(lines)
    defaults = Settings.model_fields
    for name in ("host", "port", "engine", "max_batch_size"):
        assert f"[default: {defaults[name].default}]" in text
    assert "Listen address" in text and "Listen address ." not in text


@pytest.mark.parametrize("command", [["ask"], ["doc"]])
def test_client_help_shows_the_default_of_every_option_that_takes_a_value(command):
    for line in option_lines(command):
        if "[required]" in line or any(flag in line for flag in ("--help", "--local", "--api-key")):
            continue  # a required option, a flag, or a secret read from the environment
        assert "[default: " in line, line


def test_top_level_help_lists_the_commands():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0
    for name in ("serve", "ask", "doc", "demo"):
        assert name in result.output
