"""The ``--quantization`` names vLLM 0.32.0 accepts (vllm/model_executor/layers/quantization/__init__.py).

Unset, vLLM reads the method from the checkpoint's ``quantization_config`` (an FP8, AWQ or GPTQ checkpoint carries
one), or serves the weights as they are. A name asks vLLM to quantize BF16 weights as it loads them (the online
names, vllm/config/quantization.py) or names a checkpoint's method, which must match the checkpoint's own.

vLLM 0.32 deprecates ``fp8`` for online quantization in favour of ``fp8_per_tensor``, the same per-tensor FP8;
vlserve still accepts ``fp8`` and passes ``fp8_per_tensor``.
"""

from __future__ import annotations

# Online quantization of BF16 weights at load; "online" takes its specification from --quantization-config.
ONLINE = (
    "fp8_per_tensor",
    "fp8_per_block",
    "fp8_per_channel",
    "mxfp8",
    "mxfp4",
    "int8_per_channel_weight_only",
    "nvfp4_per_token",
    "online",
)
# Methods of quantized checkpoints (fbgemm_fp8 and fp_quant are deprecated: vLLM wants
# --allow-deprecated-quantization for them).
CHECKPOINT = (
    "awq",
    "auto_awq",
    "awq_marlin",
    "gptq",
    "auto_gptq",
    "gptq_marlin",
    "compressed-tensors",
    "modelopt",
    "modelopt_fp4",
    "modelopt_mxfp8",
    "modelopt_mixed",
    "fbgemm_fp8",
    "fp_quant",
    "humming",
    "experts_int8",
    "quark",
    "moe_wna16",
    "torchao",
    "inc",
    "gpt_oss_mxfp4",
    "deepseek_v4_fp8",
)
RENAMED = {"fp8": "fp8_per_tensor"}  # old name: the name vLLM 0.32 wants


def check_quantization(name: str) -> str:
    """``name`` in vLLM's spelling (lower case), or ValueError listing the names vLLM 0.32 accepts."""
    method = name.strip().lower()
    if method in ONLINE or method in CHECKPOINT or method in RENAMED:
        return method
    raise ValueError(
        f"unknown quantization {name.strip()[:40]!r} for vLLM 0.32; online, from BF16 weights: {', '.join(ONLINE)} "
        f"(fp8 means fp8_per_tensor); a quantized checkpoint's method: {', '.join(CHECKPOINT)}; "
        "unset: the checkpoint's own"
    )


def vllm_name(method: str) -> str:
    """The name vLLM 0.32 is given for ``method``: ``fp8_per_tensor`` for ``fp8``, else ``method``."""
    return RENAMED.get(method, method)
