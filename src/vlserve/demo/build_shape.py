"""Build a random-weight checkpoint at a released Qwen3-VL architecture (`vlserve demo build --shape`).

The checkpoint has the released `config.json` (shapes.py), its sampling defaults, the demo chat
template, a Qwen3-sized tokenizer (every special token at Qwen3's id) and bfloat16 random weights,
laid out as Hugging Face safetensors shards with an index. It loads with the same calls as the real
checkpoint, so loading, memory and speed can be measured on a machine without the real weights.

Memory-light: the model is laid out on the meta device (no storage) only to learn every weight's
name and shape; each shard's weights are then drawn and written before the next shard's are drawn,
so the build holds about one shard (SHARD_BYTES) in memory, whatever the model's size.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import (
    PreTrainedConfig,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeConfig,
    Qwen3VLMoeForConditionalGeneration,
)

from vlserve.demo.build import MANIFEST_NAME, _write_json, write_atomically, write_tokenizer_and_processors
from vlserve.demo.config import IMAGE_PROCESSOR_CONFIG
from vlserve.demo.shapes import GENERATION_CONFIG, shape_config
from vlserve.demo.tokenizer import train_qwen_sized_tokenizer

__all__ = ["SHARD_BYTES", "NotEnoughSpaceError", "build_shape_model", "is_complete_shape", "weight_plan"]

SHARD_BYTES = 2 * 1024**3
_DTYPE = torch.bfloat16
_INDEX_NAME = "model.safetensors.index.json"
_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    MANIFEST_NAME,
)


class NotEnoughSpaceError(OSError):
    """The target file system cannot hold the checkpoint; raised before anything is written."""


@dataclass(frozen=True)
class Weight:
    name: str
    shape: tuple[int, ...]
    init: str  # "normal" (std = initializer_range), "ones" or "zeros"

    @property
    def nbytes(self) -> int:
        return torch.Size(self.shape).numel() * _DTYPE.itemsize


# architecture -> (its config class, its model class)
_CLASSES: dict[str, tuple[type[PreTrainedConfig], type[torch.nn.Module]]] = {
    "Qwen3VLForConditionalGeneration": (Qwen3VLConfig, Qwen3VLForConditionalGeneration),
    "Qwen3VLMoeForConditionalGeneration": (Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration),
}


def _meta_model(config: dict[str, Any]) -> torch.nn.Module:
    config_class, model_class = _CLASSES[config["architectures"][0]]
    with torch.device("meta"):
        return model_class(config_class.from_dict(config))


def _stored_shape(config: dict[str, Any], name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a weight has in the released files. Qwen3-VL-MoE stores each layer's stacked experts as
    (experts, in, out), which transformers transposes to its (experts, out, in) on load (its conversion
    mapping for qwen3_vl_moe); storing them as released makes the load do that work too."""
    if config.get("model_type") == "qwen3_vl_moe" and name.endswith((".experts.gate_up_proj", ".experts.down_proj")):
        return (shape[0], shape[2], shape[1])
    return shape


def weight_plan(config: dict[str, Any]) -> tuple[list[Weight], dict[str, int]]:
    """Every stored weight of the model `config` describes, in state-dict order, and its parameter counts.

    A tied output embedding (the 2B and 4B tie `lm_head` to the input embedding) is stored once,
    under the input embedding's name, as in the released checkpoints. Matrices are drawn, also those of
    modules that are not layers (a MoE's router and its experts' stacked weights); vectors of other
    modules (norm scales) start at one.
    """
    model = _meta_model(config)
    drawn = (torch.nn.Linear, torch.nn.Conv3d, torch.nn.Embedding)
    seen: set[int] = set()
    plan: list[Weight] = []
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            # biases start at zero, norm scales at one, the rest is drawn
            matrix = isinstance(module, drawn) or param.ndim >= 2
            init = "zeros" if param_name == "bias" else "normal" if matrix else "ones"
            name = f"{module_name}.{param_name}"
            plan.append(Weight(name, _stored_shape(config, name, tuple(param.shape)), init))
    total = sum(torch.Size(w.shape).numel() for w in plan)
    vision = sum(p.numel() for p in model.model.visual.parameters())
    return plan, {"total": total, "vision": vision, "text": total - vision}


def _draw(weight: Weight, index: int, seed: int, std: float, device: torch.device) -> torch.Tensor:
    """The weight's values, made on `device` (a GPU draws billions of them in seconds) and handed back on the CPU.

    The draws depend on the device's generator: the same seed gives other values on a GPU than on the CPU."""
    if weight.init == "ones":
        return torch.ones(weight.shape, dtype=_DTYPE)
    if weight.init == "zeros":
        return torch.zeros(weight.shape, dtype=_DTYPE)
    generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + index)  # one stream per weight
    values = torch.empty(weight.shape, dtype=_DTYPE, device=device).normal_(0.0, std, generator=generator)
    return values.cpu()


def _shards(plan: list[Weight]) -> list[list[int]]:
    """Weight indices grouped into shards of at most SHARD_BYTES (a larger single weight gets its own)."""
    shards: list[list[int]] = [[]]
    size = 0
    for i, weight in enumerate(plan):
        if shards[-1] and size + weight.nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(i)
        size += weight.nbytes
    return shards


def _write_weights(out: Path, plan: list[Weight], seed: int, std: float, device: torch.device) -> None:
    shards = _shards(plan)
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    weight_map: dict[str, str] = {}
    for file_name, indices in zip(names, shards, strict=True):
        tensors = {plan[i].name: _draw(plan[i], i, seed, std, device) for i in indices}
        save_file(tensors, out / file_name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, file_name))
        del tensors
    if len(shards) > 1:
        total = sum(w.nbytes for w in plan)
        _write_json(out / _INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})


def is_complete_shape(path: Path) -> bool:
    """True when `path` holds a finished shape checkpoint: every file, every shard its index names."""
    if not path.is_dir() or not all((path / name).is_file() for name in _FILES):
        return False
    if (path / "model.safetensors").is_file():
        return True
    try:
        index = json.loads((path / _INDEX_NAME).read_text(encoding="utf-8"))
        return all((path / name).is_file() for name in set(index["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _merge(config: dict[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    for part, values in overrides.items():
        if part not in ("text_config", "vision_config"):
            raise ValueError(f"overrides may change text_config and vision_config only, not {part!r}")
        config[part] = {**config[part], **values}
    return config


def _check_space(directory: Path, needed: int) -> None:
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed * 1.05:
        raise NotEnoughSpaceError(
            f"{directory} needs {needed / 1e9:.1f} GB for the checkpoint; its file system has {free / 1e9:.1f} GB free"
        )


def _write_shape(
    out: Path, config: dict[str, Any], plan: list[Weight], seed: int, manifest: dict[str, Any], device: torch.device
) -> None:
    text = config["text_config"]
    _write_weights(out, plan, seed, std=float(text["initializer_range"]), device=device)
    _write_json(out / "config.json", config)
    _write_json(out / "generation_config.json", GENERATION_CONFIG)
    tokenizer = train_qwen_sized_tokenizer(seed=seed, model_max_length=int(text["max_position_embeddings"]))
    write_tokenizer_and_processors(out, tokenizer, IMAGE_PROCESSOR_CONFIG)
    _write_json(
        out / MANIFEST_NAME,
        {**manifest, "seed": seed, "vocab_size": len(tokenizer)},
    )


def build_shape_model(
    out_dir: Path,
    shape: str,
    *,
    seed: int = 0,
    overwrite: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Write a random-weight checkpoint of `shape` (a name in shapes.SHAPES) to `out_dir` and return it.

    Same rules as build_random_model: a complete checkpoint there is kept unless `overwrite`; an
    empty directory is filled; any other existing path is an error; nothing half-written is left.
    `overrides` replaces keys of text_config / vision_config (tests build the same pipeline at tiny
    sizes); the manifest then records them, and the directory is no longer the released shape.
    `device` is where the random values are drawn (``cuda``: much faster for billions of them); they are
    written from the CPU, one shard at a time.
    UnknownShapeError and NotEnoughSpaceError are raised before anything is written.
    """
    hub_id, config = shape_config(shape)
    if overrides:
        config = _merge(config, overrides)
    out_dir = Path(out_dir).expanduser().absolute()
    if not overwrite and is_complete_shape(out_dir):
        return out_dir
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not a complete checkpoint; pass overwrite=True")
    plan, counts = weight_plan(config)
    _check_space(out_dir.parent, sum(w.nbytes for w in plan))

    manifest: dict[str, Any] = {
        "kind": "random",
        "shape": shape,
        "architecture_of": hub_id,
        "architecture": config["architectures"][0],
        "dtype": "bfloat16",
        "parameters": counts,
    }
    if overrides:
        manifest["overrides"] = {part: dict(values) for part, values in overrides.items()}
    return write_atomically(
        out_dir,
        lambda staging: _write_shape(staging, config, plan, seed, manifest, torch.device(device)),
        overwrite=overwrite,
    )
