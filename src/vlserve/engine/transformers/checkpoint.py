"""Loading a local Qwen-VL checkpoint directory: model, tokenizer, chat template, image processor.

Only local files are read (``local_files_only``); nothing is ever downloaded. The processor
class is not used because it needs torchvision for its video slot; the tokenizer and the image
processor are loaded separately, which works with the PIL image-processor fallback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

from vlserve.engine.base import GREEDY, SamplingParams
from vlserve.engine.checkpoint_files import CheckpointError, architecture, context_length, read_config
from vlserve.engine.transformers.cpu import native_bfloat16, usable_cpus
from vlserve.engine.transformers.patch_embed import use_matmul_patch_embeddings

log = logging.getLogger("vlserve.engine")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "read_config", "sampling_defaults", "set_cpu_threads"]


@dataclass
class Checkpoint:
    model: Any
    tokenizer: Any
    image_processor: Any
    chat_template: str
    eos_token_ids: list[int]
    pad_token_id: int
    model_type: str
    architecture: str
    max_position_embeddings: int
    device: torch.device
    default_sampling: SamplingParams


def sampling_defaults(generation: GenerationConfig | None) -> SamplingParams:
    """The checkpoint's recommended sampling (Qwen3-VL ships temperature 0.7, top_p 0.8, top_k 20); every field set."""
    if generation is None or not generation.do_sample:
        return GREEDY
    return SamplingParams(
        temperature=float(generation.temperature if generation.temperature is not None else 1.0),
        top_p=float(generation.top_p if generation.top_p is not None else 1.0),
        top_k=int(generation.top_k or 0),
    )


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("device 'cuda' was requested but no CUDA GPU is available")
    return torch.device(device)


def stored_dtype(config: dict[str, Any]) -> str | None:
    """The dtype the checkpoint's weights are stored in, as its config names it (``dtype`` or ``torch_dtype``)."""
    for part in (config, config.get("text_config") or {}):
        for key in ("dtype", "torch_dtype"):
            if isinstance(part.get(key), str):
                return part[key]
    return None


def resolve_dtype(
    dtype: str, device: torch.device, *, stored: str | None = None, cpu_bf16: bool = False
) -> torch.dtype:
    """``auto``: bfloat16 on CUDA; on a CPU, bfloat16 only for a bfloat16 checkpoint on a CPU that computes it
    natively (AVX-512 BF16, AMX, Arm BF16), otherwise float32 (emulated bfloat16 is slower than float32)."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if stored == "bfloat16" and cpu_bf16 else torch.float32


def set_cpu_threads(threads: int | None) -> int:
    """Size torch's CPU thread pool: ``threads`` when given, else torch's own choice capped by the cores the
    process may use (its affinity and any cgroup CPU quota). Returns the number in use.

    Call it from the event loop's thread before any worker thread starts: OpenMP keeps the count per
    thread, and threads started afterwards take the new one."""
    chosen = threads or min(torch.get_num_threads(), usable_cpus())
    torch.set_num_threads(chosen)
    return chosen


def find_chat_template(model_dir: Path, tokenizer: Any) -> str:
    """The checkpoint's own template: tokenizer config, ``chat_template.jinja`` or ``chat_template.json``."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    as_json = model_dir / "chat_template.json"
    if as_json.is_file():
        return json.loads(as_json.read_text())["chat_template"]
    raise CheckpointError(f"{model_dir} has no chat template")


def inference_config(model_dir: Path) -> Any:
    """The model config with training-only switches off.

    ``output_router_logits`` (written by trainers, kept by many fine-tuned MoE checkpoints) makes
    ``generate`` compute the load-balancing loss, which fails on any batch with padding.
    """
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    for part in (config, getattr(config, "text_config", None)):
        if part is not None and getattr(part, "output_router_logits", False):
            part.output_router_logits = False
    return config


def _token_ids(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


def load_checkpoint(model_dir: Path, *, device: str = "auto", dtype: str = "auto") -> Checkpoint:
    config = read_config(model_dir)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device, stored=stored_dtype(config), cpu_bf16=native_bfloat16())
    log.info(
        "loading %s (%s) on %s as %s (%d CPU threads)",
        model_dir.name,
        config["model_type"],
        torch_device,
        str(torch_dtype).removeprefix("torch."),
        torch.get_num_threads(),
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    image_processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(
        model_dir,
        config=inference_config(model_dir),
        dtype=torch_dtype,
        local_files_only=True,
        device_map=str(torch_device) if torch_device.type == "cuda" else None,
    )
    if torch_device.type != "cuda":
        model = model.to(torch_device)
    model.eval()
    use_matmul_patch_embeddings(model)

    generation = (
        GenerationConfig.from_pretrained(model_dir) if (model_dir / "generation_config.json").is_file() else None
    )
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = _token_ids(generation.eos_token_id if generation else None) or _token_ids(tokenizer.eos_token_id)
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end not in eos:
        eos.insert(0, im_end)
    if not eos:
        raise CheckpointError("the checkpoint defines no end-of-sequence token")
    pad = tokenizer.pad_token_id
    if pad is None and generation is not None:
        pad = generation.pad_token_id
    return Checkpoint(
        model=model,
        tokenizer=tokenizer,
        image_processor=image_processor,
        chat_template=find_chat_template(model_dir, tokenizer),
        eos_token_ids=eos,
        pad_token_id=pad if pad is not None else eos[0],
        model_type=config["model_type"],
        architecture=architecture(config),
        max_position_embeddings=context_length(config),
        device=torch_device,
        default_sampling=sampling_defaults(generation),
    )
