"""A small fake checkpoint on disk: the files a pulled model has, with a few MB of bytes standing for weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

from vlserve.models.manifest import build_manifest

WEIGHTS = "model-00001-of-00001.safetensors"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def fake_checkpoint(directory: Path, *, weight_bytes: int = 5 * 1024 * 1024, manifest: bool = True) -> Path:
    """config.json, tokenizer, chat template and one weight file larger than a hashing chunk; with a manifest
    as `vlserve pull` leaves it (and huggingface_hub's .cache/ bookkeeping, which is no part of it)."""
    directory.mkdir(parents=True)
    config = {"model_type": "qwen3_vl", "architectures": ["Qwen3VLForConditionalGeneration"]}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer.json").write_text('{"version": "1.0"}')
    (directory / "chat_template.jinja").write_text("{{ messages }}")
    (directory / WEIGHTS).write_bytes(random.Random(0).randbytes(weight_bytes))
    (directory / ".cache" / "huggingface").mkdir(parents=True)
    (directory / ".cache" / "huggingface" / "download.lock").write_text("")
    if manifest:
        build_manifest(directory, source="huggingface", repo_id="Qwen/Qwen3-VL-2B-Instruct", revision=REVISION).write(
            directory
        )
    return directory
