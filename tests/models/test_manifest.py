"""The manifest beside a checkpoint: written, read back, and refused when it is damaged."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.models.checkpoints import REVISION, WEIGHTS, fake_checkpoint
from vlserve.models.manifest import (
    MANIFEST_NAME,
    ChecksumError,
    FileEntry,
    Manifest,
    ManifestError,
    build_manifest,
    hash_file,
    verify,
)


def test_a_manifest_lists_every_file_with_size_and_sha256_and_reads_back_equal(tmp_path):
    directory = fake_checkpoint(tmp_path / "ckpt")
    manifest = Manifest.read(directory)
    weights = (directory / WEIGHTS).read_bytes()
    assert [f.path for f in manifest.files] == ["chat_template.jinja", "config.json", WEIGHTS, "tokenizer.json"]
    assert FileEntry(WEIGHTS, len(weights), hashlib.sha256(weights).hexdigest()) in manifest.files
    assert (manifest.source, manifest.repo_id, manifest.revision) == (
        "huggingface",
        "Qwen/Qwen3-VL-2B-Instruct",
        REVISION,
    )
    assert manifest.created_at.endswith("+00:00")
    manifest.write(directory)
    assert Manifest.read(directory) == manifest
    assert verify(directory).ok


def test_hashing_streams_the_file_and_reports_every_byte(tmp_path):
    directory = fake_checkpoint(tmp_path / "ckpt", manifest=False)
    seen: list[int] = []
    digest = hash_file(directory / WEIGHTS, progress=seen.append)
    assert digest == hashlib.sha256((directory / WEIGHTS).read_bytes()).hexdigest()
    assert len(seen) > 1 and sum(seen) == 5 * 1024 * 1024


def test_a_weight_file_unlike_the_hubs_sha256_is_an_error_naming_it(tmp_path):
    directory = fake_checkpoint(tmp_path / "ckpt", manifest=False)
    good = hash_file(directory / WEIGHTS)
    build_manifest(directory, source="huggingface", repo_id="r/m", revision=REVISION, expected={WEIGHTS: good})
    with pytest.raises(ChecksumError, match=WEIGHTS) as caught:
        build_manifest(directory, source="huggingface", repo_id="r/m", revision=None, expected={WEIGHTS: "0" * 64})
    assert caught.value.path == WEIGHTS
    with pytest.raises(ChecksumError, match="model-2.safetensors: missing"):
        build_manifest(directory, source="local", repo_id=None, revision=None, expected={"model-2.safetensors": good})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{not json", "is not a valid manifest"),
        (json.dumps({"source": "huggingface", "created_at": "x"}), "missing field 'files'"),
        (json.dumps({"source": "ftp", "created_at": "x", "files": []}), "source 'ftp'"),
        (json.dumps({"source": "local", "created_at": "x", "files": [{"path": "../x", "size": 1, "sha256": "0" * 64}]}),
         "not a path inside the checkpoint"),
    ],
)  # fmt: skip
def test_a_missing_or_malformed_manifest_is_one_line_naming_it(tmp_path, body, says):
    with pytest.raises(ManifestError, match=f"has no {MANIFEST_NAME}"):
        Manifest.read(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(body)
    with pytest.raises(ManifestError, match=says) as caught:
        Manifest.read(tmp_path)
    assert MANIFEST_NAME in str(caught.value) and "\n" not in str(caught.value)
