"""The transformers engine serves every supported family, not just the MoE: dense Qwen3-VL and Qwen2.5-VL.

Tiny random checkpoints of each class are written with the demo tokenizer and image processor, then
served through the engine end to end (template, image-pad expansion, 3-D positions, generation).
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from PIL import Image
from transformers import (
    AutoTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.engine.transformers import TransformersEngine
from vlserve.settings import Settings

VISION = {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 64}


def text_config(vocab: int, mrope_section: list[int], interleaved: bool) -> dict:
    rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope_section}
    if interleaved:
        rope["mrope_interleaved"] = True
    return {
        "vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 2048,
        "rope_parameters": rope,
    }  # fmt: skip


def build(kind: str, demo_model, out):
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    ids = {
        f"{name}_token_id": tokenizer.convert_tokens_to_ids(f"<|{token}|>")
        for name, token in (("image", "image_pad"), ("video", "video_pad"), ("vision_start", "vision_start"),
                            ("vision_end", "vision_end"))
    }  # fmt: skip
    if kind == "qwen3_vl":
        config = Qwen3VLConfig(
            text_config=text_config(len(tokenizer), [4, 2, 2], True),
            vision_config={**VISION, "num_position_embeddings": 256, "deepstack_visual_indexes": [0]},
            **ids,
        )
        model = Qwen3VLForConditionalGeneration(config)
    else:
        config = Qwen2_5_VLConfig(
            text_config=text_config(len(tokenizer), [2, 3, 3], False),
            vision_config={**VISION, "fullatt_block_indexes": [1], "window_size": 56},
            **ids,
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for name in ("preprocessor_config.json", "generation_config.json"):
        shutil.copy(demo_model / name, out / name)
    if kind == "qwen2_5_vl":  # Qwen2.5-VL: 14 px patches, one visual token per 28 x 28 px
        processor = json.loads((out / "preprocessor_config.json").read_text())
        (out / "preprocessor_config.json").write_text(json.dumps({**processor, "patch_size": 14}))
    return out


@pytest.mark.parametrize(
    ("kind", "architecture", "pixels_per_token"),
    [
        ("qwen3_vl", "Qwen3VLForConditionalGeneration", 32 * 32),
        ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", 28 * 28),
    ],
)
def test_engine_serves_the_family(kind, architecture, pixels_per_token, demo_model, tmp_path):
    checkpoint = build(kind, demo_model, tmp_path / kind)

    async def main():
        engine = TransformersEngine(Settings(model=checkpoint, min_pixels=16 * 32 * 32, max_pixels=128 * 32 * 32))
        await engine.start()
        try:
            image = Image.new("RGB", (448, 224), "red")  # a multiple of both 28 and 32: no resize
            prompt = await engine.prepare(EngineRequest.chat([ChatTurn.user("what colour?", 1)], [image]))
            deltas = [d async for d in engine.generate(prompt, SamplingParams(max_tokens=5))]
            return engine.info, prompt, deltas
        finally:
            await engine.close()

    info, prompt, deltas = asyncio.run(main())
    assert info.architecture == architecture
    assert sum(prompt.mm_token_type_ids) == 448 * 224 // pixels_per_token
    assert deltas[-1].finish_reason in ("stop", "length")
    assert 1 <= deltas[-1].usage.completion_tokens <= 5
