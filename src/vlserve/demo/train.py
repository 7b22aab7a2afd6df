"""Train the demo model: a small Qwen3-VL-MoE, from scratch, on synthetic charts, on CPU.

Same model class as Qwen3-VL-30B-A3B (MoE decoder with 8 experts / top-2, ViT with deepstack),
about 4 M parameters. Reproducible: the seed fixes the tokenizer, the initial weights and every
chart and question drawn. The result is a standard checkpoint directory.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, Qwen3VLMoeForConditionalGeneration

from vlserve.demo.build import save_checkpoint, write_atomically
from vlserve.demo.config import image_processor_config, make_config
from vlserve.demo.dataset import collate, examples
from vlserve.demo.targets import TARGET_CLASSES
from vlserve.demo.tokenizer import train_tokenizer
from vlserve.engine.transformers.prompting import PromptBuilder

# Sizes of the trained demo model (the random fixture is smaller; see config.py). rope_theta is 10k, not the
# 30B model's 5M: with 16 rotary frequencies and sequences of ~150 tokens, a 5M base leaves almost every
# frequency too slow to tell neighbouring positions apart.
TEXT = {
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 32, "moe_intermediate_size": 128, "num_experts": 8,
    "num_experts_per_tok": 2, "max_position_embeddings": 2048,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0, "mrope_section": [6, 5, 5],
                        "mrope_interleaved": True},
}  # fmt: skip
VISION = {"depth": 4, "hidden_size": 128, "intermediate_size": 256, "num_heads": 4, "deepstack_visual_indexes": [1, 2]}
MIN_TOKENS, MAX_TOKENS = 32, 64  # the trained pixel budget, written to preprocessor_config.json


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1100
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    curriculum: float = 0.5  # share of the run over which easy charts give way to all charts (0: none)
    questions: int = 3  # question/answer turns per chart: one vision pass trains several answers
    visual_weight: float = 1.0  # weight of the per-visual-token auxiliary loss (vlserve.demo.targets; 0: off)
    seed: int = 0
    threads: int = 2  # CPU threads for the model
    workers: int = 1  # processes drawing charts beside it (on a GPU machine, most of its CPU cores)
    device: str = "cpu"  # "cuda" trains on a GPU (bf16 autocast): same recipe, many more steps per minute


class ExampleBatches(torch.utils.data.IterableDataset):
    """Collated batches drawn in worker processes, so chart drawing overlaps the model's work.

    Batch ``b`` is drawn from its own generator seeded with ``(seed, b)`` and worker ``k`` of ``n`` makes
    batches ``k, k + n, ...``; the DataLoader takes them round-robin, so the stream is the same for any
    number of workers.
    """

    def __init__(self, builder: PromptBuilder, tokenizer: Any, config: TrainConfig) -> None:
        self._builder, self._tokenizer, self._config = builder, tokenizer, config

    def easy_share(self, index: int) -> float:
        """1 at the start, falling linearly to 0.1 once ``curriculum`` of the run is done."""
        config = self._config
        if config.curriculum <= 0:
            return 0.0
        progress = index / (config.batch_size * config.steps * config.curriculum)
        return max(0.1, 1.0 - 0.9 * progress)

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        config, size = self._config, self._config.batch_size
        rng = random.Random(f"{config.seed}:{index}")
        stream = examples(
            self._builder, self._tokenizer, rng, lambda i: self.easy_share(index * size + i), config.questions
        )
        return collate([next(stream) for _ in range(size)], self._tokenizer.pad_token_id)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = torch.utils.data.get_worker_info()
        first, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for index in range(first, self._config.steps, step):
            yield self.batch(index)


@contextlib.contextmanager
def linear_patch_embed(model: Qwen3VLMoeForConditionalGeneration) -> Iterator[None]:
    """Run the ViT patch embedding as the matrix product it is (a stride = kernel Conv3d).

    Same parameters, same result; CPU convolution kernels are several times slower for this shape,
    forward and backward. Only used while training; the saved model is the standard class.
    """
    embed = model.model.visual.patch_embed

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        weight = embed.proj.weight
        return F.linear(pixels.to(weight.dtype).reshape(-1, weight[0].numel()), weight.flatten(1), embed.proj.bias)

    embed.forward = forward
    try:
        yield
    finally:
        del embed.forward


class VisualProbe(torch.nn.Module):
    """Linear read-outs of the per-token targets from the vision tower's output (training only).

    Hooked on the merger, so it sees exactly the vectors the decoder receives, in merged-token order.
    """

    def __init__(self, model: Qwen3VLMoeForConditionalGeneration) -> None:
        super().__init__()
        width = model.config.vision_config.out_hidden_size
        self.heads = torch.nn.ModuleList(torch.nn.Linear(width, n) for n in TARGET_CLASSES)
        self._output: torch.Tensor | None = None
        self._hook = model.model.visual.merger.register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        self._output = output

    def loss(self, targets: torch.Tensor) -> torch.Tensor:
        output, self._output = self._output, None  # each forward pass is read once
        if output is None or output.shape[0] != targets.shape[0]:
            raise RuntimeError("visual targets do not match the vision tower's output")
        return torch.stack([F.cross_entropy(head(output), targets[:, i]) for i, head in enumerate(self.heads)]).mean()

    def remove(self) -> None:
        self._hook.remove()


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int
    loss: float
    elapsed_s: float
    visual_loss: float = float("nan")


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    done = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only (not norms and biases).

    Without it the vision merger's output grows until every visual token is ~100x the size of a text
    embedding and points the same way (cosine ~0.95): the decoder's RMSNorm then leaves almost none of
    the per-patch detail, and the model learns to answer from the text alone.
    """
    decay = [p for p in model.parameters() if p.ndim >= 2]
    keep = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def build_model(tokenizer: Any, seed: int) -> Qwen3VLMoeForConditionalGeneration:
    config = make_config(tokenizer, text_overrides={**TEXT, "output_router_logits": True}, vision_overrides=VISION)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Qwen3VLMoeForConditionalGeneration(config).to(torch.float32)


def train(
    out_dir: Path,
    config: TrainConfig = TrainConfig(),
    *,
    on_progress: Callable[[Progress], None] | None = None,
    overwrite: bool = True,
) -> Path:
    """Train and write the checkpoint to ``out_dir`` (atomically); returns it."""
    torch.set_num_threads(config.threads)
    tokenizer = train_tokenizer(seed=config.seed)
    model = build_model(tokenizer, config.seed)
    processor_config = image_processor_config(MIN_TOKENS, MAX_TOKENS)

    def write(staging: Path) -> None:
        # The image processor is loaded from a real config file, exactly as the server will load it.
        save_checkpoint(model, tokenizer, staging, manifest={"kind": "untrained"}, processor_config=processor_config)
        processor = AutoImageProcessor.from_pretrained(staging)
        builder = PromptBuilder(
            tokenizer, processor, tokenizer.chat_template,
            min_pixels=processor.size["shortest_edge"], max_pixels=processor.size["longest_edge"],
        )  # fmt: skip
        loss = run(model, builder, tokenizer, config, on_progress)
        model.config.text_config.output_router_logits = False
        model.eval()
        manifest = {"kind": "trained", "train": asdict(config), "final_loss": round(loss, 5)}
        save_checkpoint(model, tokenizer, staging, manifest=manifest, processor_config=processor_config)

    return write_atomically(out_dir, write, overwrite=overwrite)


def run(
    model: Qwen3VLMoeForConditionalGeneration,
    builder: PromptBuilder,
    tokenizer: Any,
    config: TrainConfig,
    on_progress: Callable[[Progress], None] | None,
) -> float:
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    batches = iter(
        torch.utils.data.DataLoader(
            ExampleBatches(builder, tokenizer, config), batch_size=None, num_workers=config.workers
        )
    )
    probe = VisualProbe(model).to(device)
    groups = parameter_groups(model, config.weight_decay)
    groups[1]["params"] = [*groups[1]["params"], *probe.parameters()]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98))
    trained = [p for group in groups for p in group["params"]]
    model.train()
    started, smoothed, smoothed_visual = time.monotonic(), float("nan"), float("nan")
    try:
        with linear_patch_embed(model):
            for step, batch in enumerate(batches):
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, config)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                targets = batch.pop("visual_targets")
                with autocast:
                    loss = model(**batch).loss
                    visual = probe.loss(targets)
                (loss + config.visual_weight * visual).backward()
                torch.nn.utils.clip_grad_norm_(trained, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                smoothed = _ema(smoothed, float(loss.detach()))
                smoothed_visual = _ema(smoothed_visual, float(visual.detach()))
                if on_progress is not None:
                    elapsed = time.monotonic() - started
                    on_progress(Progress(step + 1, config.steps, smoothed, elapsed, smoothed_visual))
    finally:
        probe.remove()
        model.to("cpu")
    return smoothed


def _ema(previous: float, value: float) -> float:
    return value if math.isnan(previous) else 0.95 * previous + 0.05 * value
