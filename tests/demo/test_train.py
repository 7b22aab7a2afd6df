"""The trainer: schedule, the patch-embedding shortcut, and a real (tiny) run writing a servable checkpoint."""

from __future__ import annotations

import json

import torch
from transformers import AutoImageProcessor, AutoModelForImageTextToText

from vlserve.demo.tokenizer import train_tokenizer
from vlserve.demo.train import MAX_TOKENS, MIN_TOKENS, TrainConfig, build_model, linear_patch_embed, lr_at, train


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    config = TrainConfig(steps=1000, warmup=100, lr=1e-3)
    assert lr_at(0, config) == 1e-5
    assert lr_at(99, config) == 1e-3
    assert lr_at(100, config) == 1e-3
    assert abs(lr_at(999, config) - 1e-4) < 1e-6


def test_linear_patch_embedding_equals_the_convolution():
    model = build_model(train_tokenizer(), seed=0)
    pixels = torch.randn(12, 3 * 2 * 16 * 16)
    embed = model.model.visual.patch_embed
    expected = embed(pixels)
    with linear_patch_embed(model):
        assert torch.allclose(embed(pixels), expected, atol=1e-5)
    assert torch.equal(embed(pixels), expected)  # restored afterwards


def test_a_short_run_writes_a_servable_trained_checkpoint(tmp_path):
    seen = []
    out = train(tmp_path / "demo", TrainConfig(steps=2, batch_size=2, warmup=1), on_progress=seen.append)
    assert [p.step for p in seen] == [1, 2]
    manifest = json.loads((out / "vlserve_demo.json").read_text())
    assert manifest["kind"] == "trained" and manifest["train"]["steps"] == 2
    model = AutoModelForImageTextToText.from_pretrained(out)
    assert type(model).__name__ == "Qwen3VLMoeForConditionalGeneration"
    assert model.config.text_config.num_experts == 8
    assert not model.config.text_config.output_router_logits
    size = AutoImageProcessor.from_pretrained(out).size
    assert (size["shortest_edge"], size["longest_edge"]) == (MIN_TOKENS * 1024, MAX_TOKENS * 1024)


def test_curriculum_starts_on_easy_charts_and_widens():
    from vlserve.demo.train import ExampleBatches

    batches = ExampleBatches(None, None, TrainConfig(steps=100, batch_size=10, curriculum=0.5))
    assert batches.easy_share(0) == 1.0
    assert 0.1 < batches.easy_share(250) < 1.0
    assert batches.easy_share(500) == batches.easy_share(999) == 0.1
    assert ExampleBatches(None, None, TrainConfig(curriculum=0)).easy_share(0) == 0.0


def test_only_matrices_are_decayed():
    from vlserve.demo.train import parameter_groups

    model = build_model(train_tokenizer(), seed=0)
    decay, keep = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in keep["params"])
    assert len(decay["params"]) + len(keep["params"]) == len(list(model.parameters()))


def test_visual_probe_reads_the_tokens_the_decoder_gets_and_refuses_mismatched_targets():
    import pytest

    from vlserve.demo.targets import NUM_TARGETS
    from vlserve.demo.train import VisualProbe

    model = build_model(train_tokenizer(), seed=0)
    probe = VisualProbe(model)
    grid = torch.tensor([[1, 8, 12]])  # 8 x 12 patches: 2 x 3 = 24 merged tokens
    pixels = torch.randn(int(grid.prod()), 3 * 2 * 16 * 16)
    embeds = model.model.visual(pixels, grid_thw=grid).pooler_output
    targets = torch.zeros(embeds.shape[0], NUM_TARGETS, dtype=torch.long)
    loss = probe.loss(targets)
    loss.backward()
    assert loss.item() > 0 and model.model.visual.merger.linear_fc2.weight.grad is not None
    model.model.visual(pixels, grid_thw=grid)
    with pytest.raises(RuntimeError, match="do not match"):
        probe.loss(targets[:-1])
    probe.remove()
    model.model.visual(pixels, grid_thw=grid)
    with pytest.raises(RuntimeError):
        probe.loss(targets)  # removed: no longer sees the tower's output


def test_the_batch_stream_is_the_same_for_any_number_of_drawing_workers(parts):
    from vlserve.demo.train import ExampleBatches

    builder, tokenizer = parts
    dataset = ExampleBatches(builder, tokenizer, TrainConfig(steps=5, batch_size=2, questions=2))

    def stream(workers: int) -> list[list[int]]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
        return [batch["input_ids"].flatten().tolist() for batch in loader]

    one = stream(0)
    assert len(one) == 5 and len({tuple(b) for b in one}) == 5
    assert stream(2) == one
    assert one[3] == dataset.batch(3)["input_ids"].flatten().tolist()
