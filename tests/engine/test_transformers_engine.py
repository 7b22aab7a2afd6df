"""The transformers backend on the demo checkpoint: loading, prompts, budgets, streaming, stop strings."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from transformers import GenerationConfig

from tests.support.images import chart
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.engine.budget import completion_budget
from vlserve.engine.transformers import TransformersEngine
from vlserve.engine.transformers.checkpoint import CheckpointError, load_checkpoint, read_config, sampling_defaults
from vlserve.engine.transformers.prompting import PromptBuilder
from vlserve.engine.transformers.runner import collate
from vlserve.errors import ClientError, ContextLengthError
from vlserve.settings import Settings


@pytest.fixture(scope="module")
def checkpoint(demo_model):
    return load_checkpoint(demo_model)


@pytest.fixture(scope="module")
def builder(checkpoint):
    return PromptBuilder(
        checkpoint.tokenizer, checkpoint.image_processor, checkpoint.chat_template,
        min_pixels=64 * 32 * 32, max_pixels=256 * 32 * 32,
    )  # fmt: skip


def user(*parts) -> list[ChatTurn]:
    return [ChatTurn("user", tuple(parts))]


def test_checkpoint_loads_in_float32_on_cpu_with_im_end_as_eos(checkpoint):
    assert checkpoint.model.dtype == torch.float32
    assert checkpoint.architecture == "Qwen3VLMoeForConditionalGeneration"
    assert checkpoint.tokenizer.convert_ids_to_tokens(checkpoint.eos_token_ids[0]) == "<|im_end|>"
    assert checkpoint.max_position_embeddings == 4096


def test_unsupported_or_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="not supported"):
        read_config(tmp_path)


def test_sampling_defaults_follow_the_generation_config():
    assert sampling_defaults(GenerationConfig(do_sample=False)).greedy
    qwen = sampling_defaults(GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20))
    assert (qwen.temperature, qwen.top_p, qwen.top_k) == (0.7, 0.8, 20)


def test_each_image_expands_to_its_visual_token_count(builder, checkpoint):
    images = [chart(1, (320, 240)), chart(2, (64, 64))]
    prompt = builder.build(user({"type": "image"}, {"type": "text", "text": "compare"}, {"type": "image"}), images)
    grid = prompt.image_inputs["image_grid_thw"]
    expected = [int(n) for n in grid.prod(-1) // 4]
    assert sum(prompt.mm_token_type_ids) == sum(expected)
    assert min(expected) >= 64 and max(expected) <= 256  # the pixel budget bounds every image
    text = checkpoint.tokenizer.decode(prompt.input_ids)
    assert text.count("<|vision_start|>") == 2
    assert text.startswith("<|im_start|>user\nPicture 1: <|vision_start|>")  # two images: labelled
    assert text.endswith("<|im_start|>assistant\n")


def test_reserved_vision_tokens_in_user_text_are_refused(builder):
    with pytest.raises(ClientError, match="reserved vision tokens"):
        builder.build(user({"type": "text", "text": "hi <|image_pad|>"}), [])


def test_completion_budget():
    assert completion_budget(100, None, max_model_len=4096, default=512) == 512
    assert completion_budget(4000, None, max_model_len=4096, default=512) == 96
    assert completion_budget(100, 50, max_model_len=4096, default=512) == 50
    with pytest.raises(ContextLengthError) as err:
        completion_budget(4096, None, max_model_len=4096, default=512)
    assert err.value.param == "messages"
    with pytest.raises(ContextLengthError) as err:
        completion_budget(100, 4000, max_model_len=4096, default=512)
    assert err.value.param == "max_tokens" and "at most 3996" in err.value.message


def test_collate_left_pads_and_keeps_image_order(builder, checkpoint):
    a = builder.build(user({"type": "text", "text": "short"}), [])
    b = builder.build(user({"type": "image"}, {"type": "text", "text": "longer question here"}), [chart(3)])
    batch = collate([a, b], checkpoint.pad_token_id, torch.device("cpu"), torch.float32)
    width = max(a.num_tokens, b.num_tokens)
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"][0].tolist() == [0] * (width - a.num_tokens) + [1] * a.num_tokens
    assert batch["input_ids"][0, : width - a.num_tokens].eq(checkpoint.pad_token_id).all()
    assert torch.equal(batch["image_grid_thw"], b.image_inputs["image_grid_thw"])
    assert batch["mm_token_type_ids"][1].sum() == sum(b.mm_token_type_ids)


def test_engine_streams_and_honours_stop_strings_and_limits(demo_model):
    async def main():
        engine = TransformersEngine(Settings(model=demo_model, min_pixels=64 * 32 * 32, max_pixels=256 * 32 * 32))
        await engine.start()
        assert engine.ready  # warm-up ran
        try:
            prompt = await engine.prepare(
                EngineRequest.chat(user({"type": "image"}, {"type": "text", "text": "values?"}), [chart(4)])
            )
            free = [d async for d in engine.generate(prompt, SamplingParams(max_tokens=20, temperature=0))]
            text = "".join(d.text for d in free)
            assert free[-1].finish_reason in ("stop", "length") and free[-1].usage.completion_tokens <= 20
            assert len(text) > 4
            stop = text[2:4]  # a piece of the greedy answer: the answer is cut right before it
            cut = [d async for d in engine.generate(prompt, SamplingParams(max_tokens=20, temperature=0, stop=(stop,)))]
            assert "".join(d.text for d in cut) == text[: text.index(stop)]
            assert cut[-1].finish_reason == "stop"
            short = [d async for d in engine.generate(prompt, SamplingParams(max_tokens=3))]
            assert short[-1].usage.completion_tokens <= 3
        finally:
            await engine.close()

    asyncio.run(main())


def test_a_checkpoint_with_router_logits_on_still_serves_padded_batches(demo_model, tmp_path):
    """Trainers write output_router_logits: true; generate() would then fail on every batch with padding."""
    import shutil

    checkpoint = tmp_path / "router-logits"
    shutil.copytree(demo_model, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["output_router_logits"] = True
    config["text_config"]["output_router_logits"] = True
    (checkpoint / "config.json").write_text(json.dumps(config))

    async def main():
        engine = TransformersEngine(Settings(model=checkpoint, warmup=False, batch_wait_ms=200))
        await engine.start()
        try:
            short = await engine.prepare(EngineRequest.chat(user({"type": "text", "text": "hi"})))
            long = await engine.prepare(
                EngineRequest.chat(user({"type": "image"}, {"type": "text", "text": "values?"}), [chart(5)])
            )

            async def answer(prompt):
                return [d async for d in engine.generate(prompt, SamplingParams(max_tokens=4, temperature=0))]

            results = await asyncio.gather(answer(short), answer(long))
            assert engine.scheduler.batch_sizes[-1] == 2  # one padded batch
            return results
        finally:
            await engine.close()

    for deltas in asyncio.run(main()):
        assert deltas[-1].finish_reason in ("stop", "length")
