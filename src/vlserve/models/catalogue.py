"""The built-in catalogue of models `vlserve pull` knows by name, and how a user's MODEL string is read.

A MODEL is a catalogue name (``qwen3-vl-2b``) or a hub id (``Qwen/Qwen3-VL-2B-Instruct``, any ``owner/name``).
Either way it is pulled into, and served from, ``DATA_DIR/models/<local name>``: the catalogue name for a
catalogued model (whichever way it was named), ``owner--name`` for any other hub id.

Hub ids. Hugging Face: the model cards (e.g. https://huggingface.co/Qwen/Qwen3-VL-8B-Instruct, listed at
https://docs.nvidia.com/nemo/megatron-bridge/0.3.0/models/vlm/qwen3-vl.html). ModelScope publishes the same
names under ``Qwen/``: ``modelscope download --model Qwen/Qwen3-VL-30B-A3B-Instruct`` (vllm-ascend's tutorial,
https://docs.vllm.ai/projects/ascend/en/releases-v0.20.2rc/tutorials/models/Qwen3-VL-30B-A3B-Instruct.html)
and the Qwen3-VL collection https://modelscope.cn/collections/Qwen3-VL-5c7a94c8cb144b (linked from Alibaba
Cloud's announcement of the 2B, https://developer.aliyun.com/article/1685980).

Sizes. Weights in GB (10^9 bytes) at the dtype published, from the parameter counts: 2B ≈ 2.1 B parameters,
4B ≈ 4.4 B, 8B ≈ 8.8 B (8.77 B: https://aisight.pl/?p=9918), 30B-A3B ≈ 31 B total with 3 B active per token;
BF16 is 2 bytes per parameter, the FP8 checkpoint about 1 (its vision tower and norms stay BF16). The 30B's
"about 60 GB; a single 80 GB H800 can run it" is QwenLM/Qwen3-VL #1586 (docs/engines/sizing.md). A server
needs the weights plus activations and KV cache: the machines named leave room for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# owner/name as the hubs spell repository ids: letters, digits, '-', '_', '.'; one slash.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class UnknownModel(ValueError):
    """The MODEL string is neither a catalogue name nor a hub id."""


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    huggingface: str  # repository id on huggingface.co (or the HF_ENDPOINT mirror)
    modelscope: str  # repository id on modelscope.cn
    engine: Literal["transformers", "vllm"]  # the engine it needs on the machine named in `fits`
    dtype: str  # of the published weights
    weights_gb: float  # the safetensors at that dtype, approximately
    fits: str  # the smallest machine it serves on
    description: str


CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        name="qwen3-vl-2b",
        huggingface="Qwen/Qwen3-VL-2B-Instruct",
        modelscope="Qwen/Qwen3-VL-2B-Instruct",
        engine="transformers",
        dtype="bfloat16",
        weights_gb=4.3,
        fits="CPU with 8 GB RAM (bf16; 16 GB in float32), or any GPU with 8 GB",
        description="Smallest dense Qwen3-VL: a laptop's CPU answers, slowly.",
    ),
    CatalogueEntry(
        name="qwen3-vl-4b",
        huggingface="Qwen/Qwen3-VL-4B-Instruct",
        modelscope="Qwen/Qwen3-VL-4B-Instruct",
        engine="transformers",
        dtype="bfloat16",
        weights_gb=8.9,
        fits="CPU with 16 GB RAM (bf16; 24 GB in float32), or a GPU with 16 GB",
        description="Dense Qwen3-VL, better reading than the 2B; still runs on a CPU.",
    ),
    CatalogueEntry(
        name="qwen3-vl-8b",
        huggingface="Qwen/Qwen3-VL-8B-Instruct",
        modelscope="Qwen/Qwen3-VL-8B-Instruct",
        engine="vllm",
        dtype="bfloat16",
        weights_gb=17.5,
        fits="one 24 GB GPU (vllm; transformers on that GPU also serves it, with less throughput)",
        description="Dense Qwen3-VL for one mid-size GPU; too slow on a CPU to serve.",
    ),
    CatalogueEntry(
        name="qwen3-vl-30b-a3b",
        huggingface="Qwen/Qwen3-VL-30B-A3B-Instruct",
        modelscope="Qwen/Qwen3-VL-30B-A3B-Instruct",
        engine="vllm",
        dtype="bfloat16",
        weights_gb=62.0,
        fits="one 80 GB GPU (H100/A100 80 GB), or two 48 GB with --tensor-parallel-size 2",
        description="Mixture of experts, 3 B parameters active per token: the production model.",
    ),
    CatalogueEntry(
        name="qwen3-vl-30b-a3b-fp8",
        huggingface="Qwen/Qwen3-VL-30B-A3B-Instruct-FP8",
        modelscope="Qwen/Qwen3-VL-30B-A3B-Instruct-FP8",
        engine="vllm",
        dtype="fp8",
        weights_gb=33.0,
        fits="one 48 GB GPU with FP8 support (L40S, H100; Ada or Hopper)",
        description="The 30B-A3B with FP8 weights: half the memory, nearly the same answers.",
    ),
)


@dataclass(frozen=True)
class ModelRef:
    """Where a MODEL string is pulled from and kept."""

    local_name: str  # the directory under DATA_DIR/models
    huggingface: str
    modelscope: str
    entry: CatalogueEntry | None  # None: a hub id outside the catalogue


def lookup(model: str) -> CatalogueEntry | None:
    """The catalogue entry named ``model`` (by name or by either hub id, case-insensitive), if any."""
    wanted = model.strip().lower()
    for entry in CATALOGUE:
        if wanted in (entry.name, entry.huggingface.lower(), entry.modelscope.lower()):
            return entry
    return None


def is_hub_id(model: str) -> bool:
    return _HUB_ID.fullmatch(model) is not None


def resolve(model: str) -> ModelRef:
    """A catalogue name or a hub id, read; UnknownModel naming the catalogue otherwise."""
    if (entry := lookup(model)) is not None:
        return ModelRef(entry.name, entry.huggingface, entry.modelscope, entry)
    if is_hub_id(model):
        owner, name = model.split("/")
        return ModelRef(f"{owner}--{name}", model, model, None)
    names = ", ".join(e.name for e in CATALOGUE)
    raise UnknownModel(
        f"{model!r} is neither a catalogue name ({names}) nor a hub id such as Qwen/Qwen3-VL-2B-Instruct"
    )
