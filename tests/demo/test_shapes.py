"""`vlserve demo build --shape`: random weights at a released Qwen3-VL architecture.

The full 2B/4B are too large to write here; their configs are checked against the released values and
their parameters counted on the meta device. The same pipeline at tiny widths (`overrides`) is
written, sharded, loaded by the server's checkpoint loader and asked one question by the engine.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from vlserve.cli import app
from vlserve.demo import build_shape
from vlserve.demo.build import MANIFEST_NAME
from vlserve.demo.build_shape import build_shape_model, is_complete_shape, weight_plan
from vlserve.demo.shapes import UnknownShapeError, shape_config
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.engine.transformers import TransformersEngine
from vlserve.engine.transformers.checkpoint import load_checkpoint
from vlserve.settings import Settings

# The released config.json values (sources in vlserve/demo/shapes.py):
# (hidden, ffn, layers, heads, kv heads, vision out)
RELEASED = {
    "qwen3-vl-2b": (2048, 6144, 28, 16, 8, 2048),
    "qwen3-vl-4b": (2560, 9728, 36, 32, 8, 2560),
}
# Parameters of the released checkpoints (4B: "4.44 billion"; 2B: 2.13 billion), tied lm_head counted once.
PARAMETERS = {"qwen3-vl-2b": 2_127_532_032, "qwen3-vl-4b": 4_437_815_808}

TINY = {
    "text_config": {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default"},
    },
    "vision_config": {
        "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 64,
        "deepstack_visual_indexes": [0], "num_position_embeddings": 256,
    },
}  # fmt: skip


@pytest.mark.parametrize("shape", sorted(RELEASED))
def test_shape_is_the_released_config(shape: str) -> None:
    hub_id, config = shape_config(shape)
    text, vision = config["text_config"], config["vision_config"]
    hidden, ffn, layers, heads, kv_heads, out = RELEASED[shape]
    assert hub_id == f"Qwen/Qwen3-VL-{shape[-2:].upper()}-Instruct"
    assert (config["model_type"], config["architectures"]) == ("qwen3_vl", ["Qwen3VLForConditionalGeneration"])
    assert (text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"]) == (hidden, ffn, layers)
    assert (text["num_attention_heads"], text["num_key_value_heads"], text["head_dim"]) == (heads, kv_heads, 128)
    assert (text["vocab_size"], text["max_position_embeddings"], text["rope_theta"]) == (151936, 262144, 5000000)
    assert text["rope_scaling"] == {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"}
    assert config["tie_word_embeddings"] is True and text["tie_word_embeddings"] is True
    assert (vision["depth"], vision["hidden_size"], vision["intermediate_size"], vision["num_heads"]) == (
        24, 1024, 4096, 16
    )  # fmt: skip
    assert (vision["out_hidden_size"], vision["num_position_embeddings"]) == (out, 2304)
    assert vision["deepstack_visual_indexes"] == [5, 11, 17]
    assert (vision["patch_size"], vision["spatial_merge_size"], vision["temporal_patch_size"]) == (16, 2, 2)
    ids = [config[f"{k}_token_id"] for k in ("vision_start", "vision_end", "image", "video")]
    assert ids == [151652, 151653, 151655, 151656]


@pytest.mark.parametrize("shape", sorted(PARAMETERS))
def test_shape_has_the_released_parameter_count_and_bf16_size(shape: str) -> None:
    plan, counts = weight_plan(shape_config(shape)[1])
    assert counts["total"] == PARAMETERS[shape]
    assert 400e6 < counts["vision"] < 420e6  # the same ViT in both, merger width aside
    names = {w.name for w in plan}
    assert "model.language_model.embed_tokens.weight" in names and "lm_head.weight" not in names  # tied, once
    assert sum(w.nbytes for w in plan) == 2 * PARAMETERS[shape]  # bfloat16 on disk: 4.3 GB and 8.9 GB


def test_30b_a3b_shape_is_the_released_moe_config() -> None:
    hub_id, config = shape_config("qwen3-vl-30b-a3b")
    text, vision = config["text_config"], config["vision_config"]
    assert hub_id == "Qwen/Qwen3-VL-30B-A3B-Instruct"
    assert (config["model_type"], config["architectures"]) == ("qwen3_vl_moe", ["Qwen3VLMoeForConditionalGeneration"])
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]) == (2048, 48, 32)
    assert (text["num_key_value_heads"], text["head_dim"], text["vocab_size"]) == (4, 128, 151936)
    assert (text["num_experts"], text["num_experts_per_tok"], text["moe_intermediate_size"]) == (128, 8, 768)
    assert config["tie_word_embeddings"] is False and text["tie_word_embeddings"] is False
    assert (vision["depth"], vision["hidden_size"], vision["intermediate_size"], vision["num_heads"]) == (
        27, 1152, 4304, 16
    )  # fmt: skip
    assert (vision["out_hidden_size"], vision["deepstack_visual_indexes"]) == (2048, [8, 16, 24])


def test_30b_a3b_shape_has_31_billion_parameters_with_experts_stored_as_released() -> None:
    plan, counts = weight_plan(shape_config("qwen3-vl-30b-a3b")[1])
    assert counts["total"] == 31_070_754_032  # "31.1B params"; 62.1 GB in bfloat16, as the released files
    shapes = {w.name: (w.shape, w.init) for w in plan}
    layer = "model.language_model.layers.0.mlp"
    assert shapes[f"{layer}.experts.gate_up_proj"] == ((128, 2048, 1536), "normal")  # (experts, in, out)
    assert shapes[f"{layer}.experts.down_proj"] == ((128, 768, 2048), "normal")
    assert shapes[f"{layer}.gate.weight"] == ((128, 2048), "normal")  # the router is drawn, not left at one
    assert "lm_head.weight" in shapes  # untied


def test_unknown_shape_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(UnknownShapeError, match="known shapes: qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-30b-a3b"):
        build_shape_model(tmp_path / "x", "qwen3-vl-9b")
    assert not (tmp_path / "x").exists()
    result = CliRunner().invoke(app, ["demo", "build", "--shape", "qwen3-vl-9b", "--out", str(tmp_path / "y")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown shape 'qwen3-vl-9b'; known shapes: qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-30b-a3b"
    ]
    assert not (tmp_path / "y").exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2B shape's pipeline at tiny widths, in shards of at most 8 MB (the real one writes 2 GiB shards)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build_shape, "SHARD_BYTES", 8 * 1024 * 1024)
        return build_shape_model(tmp_path_factory.mktemp("shape") / "random-2b", "qwen3-vl-2b", overrides=TINY)


def test_tiny_shape_is_sharded_and_described(tiny: Path) -> None:
    assert is_complete_shape(tiny)
    index = json.loads((tiny / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((tiny / name).is_file() for name in shards)
    config = json.loads((tiny / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == 151936 and config["text_config"]["hidden_size"] == 64
    manifest = json.loads((tiny / MANIFEST_NAME).read_text())
    assert manifest["shape"] == "qwen3-vl-2b" and manifest["overrides"] and manifest["vocab_size"] == 151669
    assert json.loads((tiny / "generation_config.json").read_text())["eos_token_id"] == [151645, 151643]


def test_tiny_shape_loads_with_qwen3_token_ids_and_sampling(tiny: Path) -> None:
    checkpoint = load_checkpoint(tiny)
    config = json.loads((tiny / "config.json").read_text())
    tokenizer = checkpoint.tokenizer
    assert (checkpoint.model_type, checkpoint.architecture) == ("qwen3_vl", "Qwen3VLForConditionalGeneration")
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config["image_token_id"]
    assert tokenizer.convert_tokens_to_ids("<|vision_start|>") == config["vision_start_token_id"]
    assert tokenizer.convert_tokens_to_ids(["<tool_call>", "</think>"]) == [151657, 151668]
    assert checkpoint.eos_token_ids == [151645, 151643] and checkpoint.pad_token_id == 151643
    assert (checkpoint.default_sampling.temperature, checkpoint.default_sampling.top_p) == (0.7, 0.8)
    model = checkpoint.model
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    text = "价格 12.5% <tool_call>"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tiny_shape_answers_a_question_about_an_image(tiny: Path) -> None:
    async def main():
        engine = TransformersEngine(Settings(model=tiny, warmup=False))
        await engine.start()
        try:
            image = Image.new("RGB", (256, 256), "red")  # 8 x 8 visual tokens of 32 px
            prompt = await engine.prepare(EngineRequest.chat([ChatTurn.user("what colour?", 1)], [image]))
            return prompt, [d async for d in engine.generate(prompt, SamplingParams(max_tokens=5, seed=1))]
        finally:
            await engine.close()

    prompt, deltas = asyncio.run(main())
    assert sum(prompt.mm_token_type_ids) == 64
    assert deltas[-1].finish_reason in ("stop", "length")
    assert 1 <= deltas[-1].usage.completion_tokens <= 5


TINY_MOE = {
    "text_config": {
        **TINY["text_config"], "num_hidden_layers": 1, "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 48,
    },
    "vision_config": TINY["vision_config"],
}  # fmt: skip


def test_tiny_moe_shape_loads_and_answers(tmp_path: Path) -> None:
    """The 30B-A3B pipeline at tiny widths: experts stored as released load through transformers' transpose."""
    path = build_shape_model(tmp_path / "random-moe", "qwen3-vl-30b-a3b", overrides=TINY_MOE)
    checkpoint = load_checkpoint(path)
    assert checkpoint.architecture == "Qwen3VLMoeForConditionalGeneration"
    experts = checkpoint.model.model.language_model.layers[0].mlp.experts
    assert tuple(experts.gate_up_proj.shape) == (4, 96, 64) and tuple(experts.down_proj.shape) == (4, 64, 48)
    stored = load_file(path / "model.safetensors")["model.language_model.layers.0.mlp.experts.down_proj"]
    assert tuple(stored.shape) == (4, 48, 64)
    assert torch.equal(experts.down_proj.detach().to(torch.bfloat16), stored.transpose(1, 2))
    ids = checkpoint.tokenizer("hello", return_tensors="pt").input_ids
    assert checkpoint.model(input_ids=ids).logits.shape[-1] == 151936
