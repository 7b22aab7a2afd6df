"""Build the bundled random-weight demo checkpoint (Qwen3-VL-MoE class, tiny sizes).

The directory loads fully offline with `AutoModelForImageTextToText`, `AutoTokenizer` and
`AutoImageProcessor`. It is written into a temporary sibling directory and renamed into place, so a
killed build never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, Qwen3VLMoeForConditionalGeneration

from vlserve.demo.config import IMAGE_PROCESSOR_CONFIG, VIDEO_PROCESSOR_CONFIG, make_config
from vlserve.demo.tokenizer import EOS_TOKEN, PAD_TOKEN, train_tokenizer

__all__ = [
    "MANIFEST_NAME",
    "REQUIRED_FILES",
    "add_legacy_config_keys",
    "build_random_model",
    "is_complete_checkpoint",
    "save_checkpoint",
    "write_atomically",
]

MANIFEST_NAME = "vlserve_demo.json"
REQUIRED_FILES: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "preprocessor_config.json",
)

# The lm_head is drawn wider than the rest (std 0.02) so that an untrained model's greedy choice
# is not a near-tie: batched and single-request float32 decoding then agree token for token.
LM_HEAD_STD = 0.2


def is_complete_checkpoint(path: Path) -> bool:
    """True when `path` holds every file a serving load needs."""
    return path.is_dir() and all((path / name).is_file() for name in REQUIRED_FILES)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def add_legacy_config_keys(path: Path) -> None:
    """Also spell the keys the way the released checkpoint's config.json does.

    transformers 5 writes `num_local_experts` and `rope_parameters`; readers built for the released
    Qwen3-VL-30B-A3B config (transformers 4.57, vLLM) look for `num_experts`, `rope_scaling` and
    `rope_theta`. Both spellings carry the same values, and transformers 5 loads either.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    text = config["text_config"]
    text["num_experts"] = text["num_local_experts"]
    rope = text["rope_parameters"]
    text["rope_theta"] = rope["rope_theta"]
    text["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    _write_json(path, config)


def _portable_tokenizer_class(path: Path) -> None:
    """Name the tokenizer class `PreTrainedTokenizerFast`, which transformers 4 and 5 both know.

    transformers 5 writes `TokenizersBackend` (unknown to 4.x); it must not be `Qwen2Tokenizer`
    either, because transformers 5 rebuilds that class's pre-tokenizer and would drop the digit split.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    _write_json(path, config)


def _parameter_counts(model: Qwen3VLMoeForConditionalGeneration) -> dict[str, int]:
    text = model.config.text_config
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    experts = sum(p.numel() for name, p in model.named_parameters() if ".mlp.experts." in name)
    inactive = experts * (text.num_experts - text.num_experts_per_tok) // text.num_experts
    return {
        "total": total,
        "vision": vision,
        "text": total - vision,
        "experts": experts,
        "active_per_token": total - inactive,
    }


def write_tokenizer_and_processors(out: Path, tokenizer: Any, processor_config: dict[str, Any]) -> None:
    """The tokenizer (with a class name every transformers version loads), its chat template and the image
    and video processor configs, beside a checkpoint's weights."""
    tokenizer.save_pretrained(out)
    _portable_tokenizer_class(out / "tokenizer_config.json")
    # transformers 5 writes chat_template.jinja next to the tokenizer; make sure it is there even
    # if a version keeps the template only inside tokenizer_config.json.
    if not (out / "chat_template.jinja").is_file():
        (out / "chat_template.jinja").write_text(tokenizer.chat_template or "", encoding="utf-8")
    _write_json(out / "preprocessor_config.json", processor_config)
    _write_json(out / "video_preprocessor_config.json", VIDEO_PROCESSOR_CONFIG)


def save_checkpoint(
    model: Qwen3VLMoeForConditionalGeneration,
    tokenizer: Any,
    out: Path,
    *,
    manifest: dict[str, Any],
    processor_config: dict[str, Any] = IMAGE_PROCESSOR_CONFIG,
) -> None:
    """Write a complete, portable checkpoint directory: weights, configs, tokenizer, template, manifest."""
    eos, pad = tokenizer.convert_tokens_to_ids([EOS_TOKEN, PAD_TOKEN])
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, pad],
        pad_token_id=pad,
        bos_token_id=None,
        do_sample=False,
    )
    model.save_pretrained(out)
    add_legacy_config_keys(out / "config.json")

    write_tokenizer_and_processors(out, tokenizer, processor_config)
    _write_json(
        out / MANIFEST_NAME,
        {
            **manifest,
            "architecture": "Qwen3VLMoeForConditionalGeneration",
            "vocab_size": len(tokenizer),
            "parameters": _parameter_counts(model),
        },
    )


def _write_checkpoint(out: Path, seed: int) -> None:
    tokenizer = train_tokenizer(seed=seed)
    config = make_config(tokenizer)

    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = Qwen3VLMoeForConditionalGeneration(config)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed + 1)
        lm_head = model.get_output_embeddings()
        lm_head.weight.copy_(torch.randn(lm_head.weight.shape, generator=generator) * LM_HEAD_STD)
    model = model.to(torch.float32).eval()
    save_checkpoint(model, tokenizer, out, manifest={"kind": "random", "seed": seed})


def write_atomically(out_dir: Path, write: Callable[[Path], None], *, overwrite: bool) -> Path:
    """Run ``write(staging_dir)`` and rename the result to ``out_dir``: never a half-written checkpoint."""
    out_dir = Path(out_dir).expanduser().absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        write(staging)
        _move_into_place(staging, out_dir, overwrite=overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def build_random_model(out_dir: Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the random demo checkpoint to `out_dir` and return it.

    The same seed gives byte-identical `model.safetensors` and `tokenizer.json`. Without
    `overwrite`, a directory that already holds a complete checkpoint is returned untouched (whatever
    seed or weights it holds); an empty directory is filled; any other existing path is an error.
    """
    out_dir = Path(out_dir).expanduser().absolute()
    if not overwrite and is_complete_checkpoint(out_dir):
        return out_dir
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not a complete checkpoint; pass overwrite=True")
    return write_atomically(out_dir, lambda staging: _write_checkpoint(staging, seed), overwrite=overwrite)


def _move_into_place(staging: Path, out_dir: Path, *, overwrite: bool) -> None:
    """Rename `staging` to `out_dir`; an old `out_dir` is moved aside first and removed after."""
    # mkdtemp makes the directory 0700 and transformers writes the weights 0600: make the
    # checkpoint readable by the (often different) user a server container runs as.
    os.chmod(staging, 0o755)
    for item in staging.iterdir():
        if item.is_file():
            os.chmod(item, 0o644)
    old: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        elif overwrite:
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
        elif is_complete_checkpoint(out_dir):  # a concurrent build finished first
            return
    try:
        staging.rename(out_dir)
    except OSError:
        if old is not None and not out_dir.exists():
            old.rename(out_dir)  # put the previous checkpoint back
            old = None
        if not is_complete_checkpoint(out_dir):  # lost a race only if the winner is complete
            raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
