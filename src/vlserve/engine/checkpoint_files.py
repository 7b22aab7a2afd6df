"""What a local checkpoint directory says about itself, read from its JSON files (no torch needed).

Every backend that serves a local directory uses this: the in-process transformers engine, and the
managed vLLM engine, which checks the directory and reads its pixel budget before starting vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlserve.errors import ServerError
from vlserve.media.resize import ImageBudget, budget_from_processor

SUPPORTED_MODEL_TYPES = {"qwen3_vl_moe", "qwen3_vl", "qwen2_5_vl", "qwen2_vl"}


class CheckpointError(ServerError):
    """The model directory cannot be served; reported at start-up, before the port opens."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} in {path.parent} cannot be read: {exc}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path.name} in {path.parent} is not a JSON object")
    return value


def read_config(model_dir: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json``; CheckpointError unless it is a supported Qwen-VL model."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{model_dir} is not a checkpoint directory (no config.json)")
    config = _read_json(config_path)
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            f"model_type {config.get('model_type')!r} is not supported; expected one of {sorted(SUPPORTED_MODEL_TYPES)}"
        )
    return config


def architecture(config: dict[str, Any]) -> str:
    return (config.get("architectures") or [config.get("model_type", "unknown")])[0]


def context_length(config: dict[str, Any]) -> int:
    """The model's own context limit (``max_position_embeddings`` of its text model)."""
    text_config = config.get("text_config", config)
    return int(text_config.get("max_position_embeddings", 32768))


def image_budget(model_dir: Path, *, min_pixels: int | None, max_pixels: int | None) -> ImageBudget:
    """The per-image pixel budget: the operator's settings, else the checkpoint's own (capped)."""
    path = model_dir / "preprocessor_config.json"
    config = _read_json(path) if path.is_file() else {}
    return budget_from_processor(config, min_pixels=min_pixels, max_pixels=max_pixels)
