"""`vlserve serve --model NAME`: a pulled checkpoint is served by its catalogue name or hub id; one not pulled
is one line naming the pull to run, and the server fetches nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.models.checkpoints import fake_checkpoint
from vlserve.cli import app
from vlserve.settings import Settings

runner = CliRunner()


NOT_PULLED = [
    ("qwen3-vl-2b", "qwen3-vl-2b"),
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl-8b"),  # a catalogued hub id: the pull is by its name
    ("OpenGVLab/InternVL3-1B", "OpenGVLab/InternVL3-1B"),
]


@pytest.mark.parametrize(("model", "pull"), NOT_PULLED)
def test_serving_a_model_not_pulled_is_one_line_naming_the_pull(tmp_path, monkeypatch, model, pull):
    monkeypatch.setenv("VLSERVE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["serve", "--model", model, "--port", "0"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith(f"cannot serve: {pull} has not been pulled")
    assert result.output.strip().endswith(f"fetch it first with: vlserve pull {pull}")
    assert not (tmp_path / "models").exists()  # nothing fetched, nothing made


def test_a_pulled_model_is_served_from_the_data_dir_by_name_or_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pulled = fake_checkpoint(tmp_path / "data" / "models" / "qwen3-vl-2b")
    for model in ("qwen3-vl-2b", "Qwen/Qwen3-VL-2B-Instruct"):
        settings = Settings(model=Path(model), data_dir=tmp_path / "data")
        assert settings.model_dir() == pulled
        assert settings.model_name() == "qwen3-vl-2b"
    assert Settings(model=pulled, data_dir=tmp_path / "elsewhere").model_dir() == pulled  # a path stays a path
