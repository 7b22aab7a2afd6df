"""Released Qwen3-VL architectures the demo builder can fill with random weights.

Each shape is the `config.json` of a released Qwen3-VL checkpoint, value for value, so that a
random-weight checkpoint built from it costs what the real one costs to load, hold and run (same
layers, widths, vocabulary, vision tower and 3-D rotary layout); only the weights differ.

Sources (the Hugging Face files, and public copies of their values that were read to write this):
- https://huggingface.co/Qwen/Qwen3-VL-2B-Instruct/blob/main/config.json; the same sizes appear in
  github.com/pytorch/torchtitan, torchtitan/experiments/qwen3_vl/__init__.py (flavour "2B":
  dim 2048, 28 layers, ffn 6144, 16/8 heads of 128, tied embeddings, ViT 1024 x 24 with ffn 4096,
  out 2048, 2304 positions, deepstack [5, 11, 17], mrope [24, 20, 20], theta 5e6).
- https://huggingface.co/Qwen/Qwen3-VL-4B-Instruct/blob/main/config.json, quoted whole in
  github.com/kohya-ss/musubi-tuner, src/musubi_tuner/krea2/krea2_encoder.py (QWEN3_VL_4B_INSTRUCT_CONFIG).
- https://huggingface.co/Qwen/Qwen3-VL-2B-Instruct/blob/main/generation_config.json: temperature 0.7,
  top_p 0.8, top_k 20 (the same for the 4B).
The two share every key but the text model's sizes and the vision merger's output width.

One mixture-of-experts shape, Qwen3-VL-30B-A3B (``Qwen3VLMoeForConditionalGeneration``), from
https://huggingface.co/Qwen/Qwen3-VL-30B-A3B-Instruct/blob/main/config.json, whose architecture keys
were read from a public transcription of that file (at its commit 1fc78ad, in a Rust parser's test) and
agree with the product specification (128 experts, 8 active), the project's GPU notes (hidden 2048, 32 heads,
4 KV heads of 128, moe_intermediate 768, ViT 1152 x 27 with ffn 4304, deepstack [8, 16, 24]) and
transformers' Qwen3VLMoeVisionConfig defaults, documented against that checkpoint. The transcription
leaves out keys its parser does not read (activation, initializer range, dropout, token ids, dtype);
those are taken from the dense shapes above, the same family's values.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["GENERATION_CONFIG", "SHAPES", "UnknownShapeError", "shape_config"]


class UnknownShapeError(ValueError):
    """The shape name is not one of SHAPES."""


def _dense_qwen3_vl(
    *, hidden_size: int, intermediate_size: int, num_hidden_layers: int, num_attention_heads: int
) -> dict[str, Any]:
    """A released dense Qwen3-VL config.json; the arguments are the keys in which the 2B and 4B differ."""
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "image_token_id": 151655,
        "model_type": "qwen3_vl",
        "text_config": {
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": 151643,
            "dtype": "bfloat16",
            "eos_token_id": 151645,
            "head_dim": 128,
            "hidden_act": "silu",
            "hidden_size": hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": intermediate_size,
            "max_position_embeddings": 262144,
            "model_type": "qwen3_vl_text",
            "num_attention_heads": num_attention_heads,
            "num_hidden_layers": num_hidden_layers,
            "num_key_value_heads": 8,
            "rms_norm_eps": 1e-06,
            "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
            "rope_theta": 5000000,
            "tie_word_embeddings": True,
            "use_cache": True,
            "vocab_size": 151936,
        },
        "tie_word_embeddings": True,
        "transformers_version": "4.57.0.dev0",
        "video_token_id": 151656,
        "vision_config": {
            "deepstack_visual_indexes": [5, 11, 17],
            "depth": 24,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": 1024,
            "in_channels": 3,
            "initializer_range": 0.02,
            "intermediate_size": 4096,
            "model_type": "qwen3_vl",
            "num_heads": 16,
            "num_position_embeddings": 2304,
            "out_hidden_size": hidden_size,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        "vision_end_token_id": 151653,
        "vision_start_token_id": 151652,
    }


def _qwen3_vl_30b_a3b() -> dict[str, Any]:
    """Qwen3-VL-30B-A3B-Instruct's config.json (sources in the module docstring): a 48-layer MoE text model,
    128 experts of width 768 with 8 active per token, untied embeddings, and the 8B's vision tower."""
    config = _dense_qwen3_vl(hidden_size=2048, intermediate_size=6144, num_hidden_layers=48, num_attention_heads=32)
    text = config["text_config"]
    text.update(
        model_type="qwen3_vl_moe_text",
        num_key_value_heads=4,
        tie_word_embeddings=False,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        moe_intermediate_size=768,
        norm_topk_prob=True,
        num_experts=128,
        num_experts_per_tok=8,
    )
    config["vision_config"].update(
        model_type="qwen3_vl_moe",
        depth=27,
        hidden_size=1152,
        intermediate_size=4304,
        deepstack_visual_indexes=[8, 16, 24],
    )
    config.update(
        architectures=["Qwen3VLMoeForConditionalGeneration"], model_type="qwen3_vl_moe", tie_word_embeddings=False
    )
    return config


# name -> (hub id of the released checkpoint, its config.json)
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen3-vl-2b": (
        "Qwen/Qwen3-VL-2B-Instruct",
        _dense_qwen3_vl(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16),
    ),
    "qwen3-vl-4b": (
        "Qwen/Qwen3-VL-4B-Instruct",
        _dense_qwen3_vl(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32),
    ),
    "qwen3-vl-30b-a3b": ("Qwen/Qwen3-VL-30B-A3B-Instruct", _qwen3_vl_30b_a3b()),
}

# The released Instruct checkpoints' generation_config.json: sampling on, stop at <|im_end|> or <|endoftext|>.
GENERATION_CONFIG: dict[str, Any] = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "top_k": 20,
    "top_p": 0.8,
    "repetition_penalty": 1.0,
    "temperature": 0.7,
}


def shape_config(name: str) -> tuple[str, dict[str, Any]]:
    """(hub id, a fresh copy of its config.json) for shape `name`; UnknownShapeError names the known ones."""
    if name not in SHAPES:
        raise UnknownShapeError(f"unknown shape {name!r}; known shapes: {', '.join(SHAPES)}")
    hub_id, config = SHAPES[name]
    return hub_id, copy.deepcopy(config)
