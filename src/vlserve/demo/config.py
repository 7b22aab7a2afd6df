"""The demo model's configuration: Qwen3-VL-30B-A3B's class and schema, scaled down.

Same `Qwen3VLMoeConfig` fields as the real checkpoint (MoE text decoder with interleaved M-RoPE,
ViT with DeepStack, `tie_word_embeddings` false) with tiny sizes, so that every code path the server
exercises for the 30B model (3-D rotary positions, expert routing, deepstack injection, visual
token expansion) runs on a laptop CPU in milliseconds.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase, Qwen3VLMoeConfig

from vlserve.demo.tokenizer import (
    EOS_TOKEN,
    IMAGE_PAD_TOKEN,
    PAD_TOKEN,
    VIDEO_PAD_TOKEN,
    VISION_END_TOKEN,
    VISION_START_TOKEN,
)

__all__ = [
    "IMAGE_PROCESSOR_CONFIG",
    "PATCH_SIZE",
    "SPATIAL_MERGE_SIZE",
    "TEMPORAL_PATCH_SIZE",
    "VIDEO_PROCESSOR_CONFIG",
    "image_processor_config",
    "make_config",
    "text_config_dict",
    "vision_config_dict",
]

PATCH_SIZE = 16
SPATIAL_MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
_FACTOR = PATCH_SIZE * SPATIAL_MERGE_SIZE  # 32 px per visual token side

# Head dim 16 -> 8 rotary frequencies. The real model splits its 64 as T/H/W = [24, 20, 20]
# and interleaves them; scaled to 8 that is [4, 2, 2] (H and W equal, T the rest).
_MROPE_SECTION = [4, 2, 2]


def text_config_dict(vocab_size: int, eos_token_id: int, pad_token_id: int) -> dict[str, Any]:
    return {
        "model_type": "qwen3_vl_moe_text",
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,  # dense-MLP size; unused while every layer is MoE
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "use_cache": True,
        "tie_word_embeddings": False,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": list(_MROPE_SECTION),
            "mrope_interleaved": True,
        },
        "attention_bias": False,
        "attention_dropout": 0.0,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "moe_intermediate_size": 64,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "norm_topk_prob": True,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "bos_token_id": None,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "dtype": "float32",
    }


def vision_config_dict(out_hidden_size: int) -> dict[str, Any]:
    return {
        "model_type": "qwen3_vl_moe_vision",
        "depth": 3,
        "hidden_size": 64,
        "intermediate_size": 128,
        "hidden_act": "gelu_pytorch_tanh",
        "num_heads": 4,
        "in_channels": 3,
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": SPATIAL_MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "out_hidden_size": out_hidden_size,
        # A square grid (16 x 16) of learned positions, bilinearly resampled to each image's grid.
        "num_position_embeddings": 256,
        "deepstack_visual_indexes": [0, 1],
        "initializer_range": 0.02,
        "dtype": "float32",
    }


def make_config(
    tokenizer: PreTrainedTokenizerBase,
    *,
    text_overrides: dict[str, Any] | None = None,
    vision_overrides: dict[str, Any] | None = None,
) -> Qwen3VLMoeConfig:
    """The full model config, with every token id taken from `tokenizer`; sizes may be overridden."""

    def tid(token: str) -> int:
        got = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(got, int) or got < 0:
            raise ValueError(f"tokenizer lacks {token}")
        return got

    eos, pad = tid(EOS_TOKEN), tid(PAD_TOKEN)
    text = {**text_config_dict(len(tokenizer), eos, pad), **(text_overrides or {})}
    vision = {**vision_config_dict(out_hidden_size=text["hidden_size"]), **(vision_overrides or {})}
    return Qwen3VLMoeConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tid(IMAGE_PAD_TOKEN),
        video_token_id=tid(VIDEO_PAD_TOKEN),
        vision_start_token_id=tid(VISION_START_TOKEN),
        vision_end_token_id=tid(VISION_END_TOKEN),
        tie_word_embeddings=False,
        eos_token_id=eos,
        pad_token_id=pad,
        architectures=["Qwen3VLMoeForConditionalGeneration"],
        dtype="float32",
    )


_PROCESSOR_COMMON: dict[str, Any] = {
    "patch_size": PATCH_SIZE,
    "temporal_patch_size": TEMPORAL_PATCH_SIZE,
    "merge_size": SPATIAL_MERGE_SIZE,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "do_resize": True,
    "do_rescale": True,
    "rescale_factor": 1.0 / 255.0,
    "do_normalize": True,
    "do_convert_rgb": True,
    "resample": 3,  # PIL bicubic
}


def image_processor_config(min_tokens: int, max_tokens: int) -> dict[str, Any]:
    """A Qwen2-VL image processor config resizing every image into [min_tokens, max_tokens] visual tokens."""
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen3VLProcessor",
        **_PROCESSOR_COMMON,
        "size": {"shortest_edge": min_tokens * _FACTOR * _FACTOR, "longest_edge": max_tokens * _FACTOR * _FACTOR},
    }


# 64 to 1280 visual tokens per image (one token per 32 x 32 px), as Qwen3-VL's README recommends.
IMAGE_PROCESSOR_CONFIG: dict[str, Any] = image_processor_config(64, 1280)

# Read only where torchvision is installed (the GPU image, vLLM); never needed on CPU.
VIDEO_PROCESSOR_CONFIG: dict[str, Any] = {
    "video_processor_type": "Qwen3VLVideoProcessor",
    "processor_class": "Qwen3VLProcessor",
    **_PROCESSOR_COMMON,
    "size": {"shortest_edge": 16 * _FACTOR * _FACTOR, "longest_edge": 768 * _FACTOR * _FACTOR},
    "fps": 2,
    "min_frames": 4,
    "max_frames": 64,
    "do_sample_frames": True,
}
