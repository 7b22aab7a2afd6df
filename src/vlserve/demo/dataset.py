"""Training examples for the demo model: a synthetic chart, a question about it, the exact answer.

An example is encoded exactly as the server will see it at inference: the checkpoint's chat
template with the question after the image, the image through the same image processor and
pixel budget, then the answer tokens and ``<|im_end|>``. Only the answer is trained on.
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
from vlserve.demo.tokenizer import EOS_TOKEN
from vlserve.engine.base import ChatTurn
from vlserve.engine.prompting import PromptBuilder

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    mm_token_type_ids: list[int]
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor


def encode(builder: PromptBuilder, tokenizer: Any, image: Any, question: str, answer: str) -> Encoded:
    prompt = builder.build([ChatTurn.user(question, 1)], [image])
    target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids(EOS_TOKEN)]
    return Encoded(
        input_ids=prompt.input_ids + target,
        labels=[IGNORE] * prompt.num_tokens + target,
        mm_token_type_ids=prompt.mm_token_type_ids + [0] * len(target),
        pixel_values=prompt.image_inputs["pixel_values"],
        image_grid_thw=prompt.image_inputs["image_grid_thw"],
    )


def is_easy(chart: Chart) -> bool:
    """Charts a model learns to read first: labelled bars, at most four, consecutive years."""
    return chart.kind == "bar" and chart.labelled and len(chart.categories) <= 4 and category_family(chart) == "year"


def examples(
    builder: PromptBuilder,
    tokenizer: Any,
    rng: random.Random,
    easy_share: Callable[[int], float] | None = None,
) -> Iterator[Encoded]:
    """An endless stream of fresh random examples, reproducible from ``rng``.

    ``easy_share(i)`` is the probability that example ``i`` is drawn from the easy charts only (a curriculum).
    """
    for i in itertools.count():
        easy = easy_share is not None and rng.random() < easy_share(i)
        chart = random_chart(rng)
        while easy and not is_easy(chart):
            chart = random_chart(rng)
        image = draw_chart(chart, rng)
        qa = make_qa(chart, rng)
        yield encode(builder, tokenizer, image, qa.question, qa.answer)


def collate(batch: Sequence[Encoded], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a training batch; images concatenated in row order."""
    width = max(len(e.input_ids) for e in batch)

    def padded(rows: list[list[int]], fill: int) -> torch.Tensor:
        return torch.tensor([row + [fill] * (width - len(row)) for row in rows], dtype=torch.long)

    return {
        "input_ids": padded([e.input_ids for e in batch], pad_token_id),
        "attention_mask": padded([[1] * len(e.input_ids) for e in batch], 0),
        "mm_token_type_ids": padded([e.mm_token_type_ids for e in batch], 0),
        "labels": padded([e.labels for e in batch], IGNORE),
        "pixel_values": torch.cat([e.pixel_values for e in batch]),
        "image_grid_thw": torch.cat([e.image_grid_thw for e in batch]),
    }
