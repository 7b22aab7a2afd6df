"""`vlserve models`: the checkpoints on this machine, their size, revision, engine and a fast check."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from tests.models.checkpoints import REVISION, WEIGHTS, fake_checkpoint
from vlserve.cli import app
from vlserve.models.manifest import Manifest

runner = CliRunner()


def test_models_lists_pulled_and_given_checkpoints_with_a_size_check(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSERVE_DATA_DIR", str(tmp_path / "data"))
    pulled = fake_checkpoint(tmp_path / "data" / "models" / "qwen3-vl-2b")
    carried = fake_checkpoint(tmp_path / "carried" / "mine", manifest=False)
    damaged = fake_checkpoint(tmp_path / "carried" / "damaged")
    os.truncate(damaged / WEIGHTS, 10)
    (tmp_path / "carried" / "notes").mkdir()  # not a checkpoint: not listed

    result = runner.invoke(app, ["models", "--json", "--dir", str(tmp_path / "carried")])
    assert result.exit_code == 0, result.output
    listed = {m["name"]: m for m in map(json.loads, result.stdout.splitlines())}
    assert set(listed) == {"qwen3-vl-2b", "mine", "damaged"}
    two_b = listed["qwen3-vl-2b"]
    assert (two_b["path"], two_b["revision"], two_b["verified"], two_b["engine"]) == (
        str(pulled), REVISION, True, "transformers",
    )  # fmt: skip
    assert two_b["size"] == Manifest.read(pulled).total_bytes  # the checkpoint's files: not the manifest, not .cache
    assert (listed["mine"]["verified"], listed["mine"]["check"], listed["mine"]["engine"]) == (
        False, "no manifest", "transformers, vllm",
    )  # fmt: skip
    assert listed["damaged"]["verified"] is False and "1 bad file(s)" in listed["damaged"]["check"]
    assert str(carried) == listed["mine"]["path"]

    table = runner.invoke(app, ["models", "--dir", str(tmp_path / "carried")])
    assert table.exit_code == 0 and "qwen3-vl-2b" in table.stdout and "sizes match" in table.stdout
