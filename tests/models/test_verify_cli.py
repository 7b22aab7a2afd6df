"""`vlserve verify DIR`: a checkpoint carried by hand, re-checked against its manifest with no network."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from tests.models.checkpoints import REVISION, WEIGHTS, fake_checkpoint
from vlserve.cli import app

runner = CliRunner()


def verify(directory):
    result = runner.invoke(app, ["verify", str(directory)])
    assert "Traceback" not in result.output
    return result


def test_a_whole_checkpoint_verifies_in_one_line(tmp_path):
    directory = fake_checkpoint(tmp_path / "ckpt")
    (directory / "README.md").write_text("notes added after the pull")  # reported, not an error
    result = verify(directory)
    assert result.exit_code == 0, result.output
    assert f"verified 4 files, 0.01 GB, revision {REVISION}" in result.stdout
    assert "README.md is not in the manifest" in result.output


def test_a_flipped_byte_in_the_weights_fails_naming_the_file(tmp_path):
    directory = fake_checkpoint(tmp_path / "ckpt")
    with (directory / WEIGHTS).open("r+b") as handle:  # same size: only the SHA-256 can tell
        handle.seek(3 * 1024 * 1024)
        byte = handle.read(1)
        handle.seek(3 * 1024 * 1024)
        handle.write(bytes([byte[0] ^ 0x01]))
    result = verify(directory)
    assert result.exit_code == 1
    assert f"{WEIGHTS}: SHA-256 differs from the manifest's" in result.output


def test_a_truncated_file_a_missing_file_and_stray_weights_each_name_the_file(tmp_path):
    directory = fake_checkpoint(tmp_path / "ckpt")
    os.truncate(directory / WEIGHTS, 1000)
    (directory / "tokenizer.json").unlink()
    (directory / "extra.safetensors").write_bytes(b"\0" * 16)  # weights the manifest never saw
    result = verify(directory)
    assert result.exit_code == 1
    assert f"{WEIGHTS}: 1000 bytes, the manifest says {5 * 1024 * 1024}" in result.output
    assert "tokenizer.json: missing" in result.output
    assert "extra.safetensors: weights not in the manifest" in result.output
    assert "3 file(s)" in result.output


def test_no_directory_or_no_manifest_is_one_line_and_exit_2(tmp_path):
    gone = verify(tmp_path / "nowhere")
    assert gone.exit_code == 2 and "is not a directory" in gone.output
    unmade = verify(fake_checkpoint(tmp_path / "ckpt", manifest=False))
    assert unmade.exit_code == 2 and "has no vlserve-manifest.json" in unmade.output
    assert len(unmade.output.strip().splitlines()) == 1
