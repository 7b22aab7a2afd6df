"""Training examples for the demo model: a synthetic chart, a question about it, the exact answer.

An example is encoded exactly as the server will see it at inference: the checkpoint's chat
template with the question after the image, the image through the same image processor and
pixel budget, then the answer tokens and ``<|im_end|>``. Only the answer is trained on, plus the
per-visual-token targets of ``vlserve.demo.targets`` for the vision tower.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlserve.demo.charts import Chart, category_family, draw_chart, random_chart
from vlserve.demo.questions import make_qa
from vlserve.demo.targets import visual_targets
from vlserve.demo.tokenizer import EOS_TOKEN
from vlserve.engine.base import ChatTurn
from vlserve.engine.transformers.prompting import PromptBuilder

IGNORE = -100
ASSISTANT_HEADER = "<|im_start|>assistant\n"


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    mm_token_type_ids: list[int]
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    visual_targets: torch.Tensor | None = None


def encode(
    builder: PromptBuilder,
    tokenizer: Any,
    image: Any,
    dialogue: Sequence[tuple[str, str]],
    chart: Chart | None = None,
) -> Encoded:
    """One chart with one or more (question, answer) turns; with ``chart`` also its per-token visual targets.

    The first turn is exactly the server's single-question prompt; later questions follow as a chat,
    so one pass of the vision tower trains several answers. Every answer and its ``<|im_end|>`` is a target.
    """
    turns = []
    for index, (question, answer) in enumerate(dialogue):
        reply = ChatTurn("assistant", ({"type": "text", "text": answer},))
        turns += [ChatTurn.user(question, 1 if index == 0 else 0), reply]
    prompt = builder.build(turns, [image])
    ids, eos = prompt.input_ids, tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    header = tokenizer(ASSISTANT_HEADER, add_special_tokens=False)["input_ids"]
    labels, end = [IGNORE] * len(ids), 0
    for _, answer in dialogue:
        start = _find(ids, header, end) + len(header)
        end = ids.index(eos, start) + 1
        if ids[start : end - 1] != tokenizer(answer, add_special_tokens=False)["input_ids"]:
            raise ValueError(f"the chat template changed the answer {answer!r}")
        labels[start:end] = ids[start:end]
    targets = None
    if chart is not None:
        grid, merge = prompt.image_inputs["image_grid_thw"][0], builder.merge_size
        targets = visual_targets(image.info, image.size, chart, int(grid[1]) // merge, int(grid[2]) // merge)
    return Encoded(
        input_ids=ids[:end],
        labels=labels[:end],
        mm_token_type_ids=prompt.mm_token_type_ids[:end],
        pixel_values=prompt.image_inputs["pixel_values"],
        image_grid_thw=prompt.image_inputs["image_grid_thw"],
        visual_targets=targets,
    )


def _find(seq: list[int], sub: list[int], start: int) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    raise ValueError("assistant header not found in the rendered dialogue")


def is_easy(chart: Chart) -> bool:
    """Charts a model learns to read first: labelled bars, at most four, consecutive years."""
    return chart.kind == "bar" and chart.labelled and len(chart.categories) <= 4 and category_family(chart) == "year"


def examples(
    builder: PromptBuilder,
    tokenizer: Any,
    rng: random.Random,
    easy_share: Callable[[int], float] | None = None,
    questions: int = 1,
) -> Iterator[Encoded]:
    """An endless stream of fresh random examples, reproducible from ``rng``: ``questions`` turns per chart.

    ``easy_share(i)`` is the probability that example ``i`` is drawn from the easy charts only (a curriculum).
    """
    for i in itertools.count():
        easy = easy_share is not None and rng.random() < easy_share(i)
        chart = random_chart(rng)
        while easy and not is_easy(chart):
            chart = random_chart(rng)
        image = draw_chart(chart, rng)
        dialogue = [make_qa(chart, rng) for _ in range(questions)]
        yield encode(builder, tokenizer, image, [(qa.question, qa.answer) for qa in dialogue], chart)


def collate(batch: Sequence[Encoded], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a training batch; images (and visual targets, when every example has them) in row order."""
    width = max(len(e.input_ids) for e in batch)

    def padded(rows: list[list[int]], fill: int) -> torch.Tensor:
        return torch.tensor([row + [fill] * (width - len(row)) for row in rows], dtype=torch.long)

    out = {
        "input_ids": padded([e.input_ids for e in batch], pad_token_id),
        "attention_mask": padded([[1] * len(e.input_ids) for e in batch], 0),
        "mm_token_type_ids": padded([e.mm_token_type_ids for e in batch], 0),
        "labels": padded([e.labels for e in batch], IGNORE),
        "pixel_values": torch.cat([e.pixel_values for e in batch]),
        "image_grid_thw": torch.cat([e.image_grid_thw for e in batch]),
    }
    targets = [e.visual_targets for e in batch]
    if all(t is not None for t in targets):
        out["visual_targets"] = torch.cat(targets)  # type: ignore[arg-type]
    return out
