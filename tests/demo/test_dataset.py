"""Training examples are encoded exactly as the server sees a request, and only the answer is trained."""

from __future__ import annotations

import random

from PIL import Image

from vlserve.demo.charts import draw_chart, random_chart
from vlserve.demo.dataset import IGNORE, collate, encode, examples
from vlserve.demo.targets import NUM_TARGETS
from vlserve.engine.base import ChatTurn


def test_prompt_is_what_the_server_builds_and_only_the_answer_is_a_target(parts):
    builder, tokenizer = parts
    rng = random.Random(3)
    image = draw_chart(random_chart(rng), rng)
    encoded = encode(builder, tokenizer, image, [("What are the values?", "2021: 12, 2022: 7")])
    served = builder.build([ChatTurn.user("What are the values?", 1)], [image])
    n = served.num_tokens
    assert encoded.input_ids[:n] == served.input_ids
    assert encoded.labels[:n] == [IGNORE] * n
    targets = encoded.labels[n:]
    assert tokenizer.decode(targets[:-1]) == "2021: 12, 2022: 7"
    assert tokenizer.convert_ids_to_tokens(targets[-1]) == "<|im_end|>"
    assert sum(encoded.mm_token_type_ids) == int(encoded.image_grid_thw.prod()) // 4


def test_a_dialogue_trains_every_answer_and_starts_with_the_server_prompt(parts):
    builder, tokenizer = parts
    rng = random.Random(4)
    image = draw_chart(random_chart(rng), rng)
    dialogue = [("What kind of chart is this?", "bar chart"), ("How many years are shown?", "3"), ("Q?", "2021")]
    encoded = encode(builder, tokenizer, image, dialogue)
    served = builder.build([ChatTurn.user(dialogue[0][0], 1)], [image])
    assert encoded.input_ids[: served.num_tokens] == served.input_ids
    trained = [t for t in encoded.labels if t != IGNORE]
    assert tokenizer.decode(trained) == "bar chart<|im_end|>3<|im_end|>2021<|im_end|>"
    assert encoded.input_ids[-1] == encoded.labels[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(encoded.input_ids).count("<|im_start|>user") == 3


def test_stream_is_reproducible_and_collates_right_padded(parts):
    builder, tokenizer = parts
    first = [next(examples(builder, tokenizer, random.Random(7))) for _ in range(1)][0]
    again = next(examples(builder, tokenizer, random.Random(7)))
    assert first.input_ids == again.input_ids
    stream = examples(builder, tokenizer, random.Random(1))
    batch = [next(stream) for _ in range(3)]
    tensors = collate(batch, tokenizer.pad_token_id)
    width = max(len(e.input_ids) for e in batch)
    assert tensors["input_ids"].shape == (3, width)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        assert tensors["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (tensors["labels"][row, n:] == IGNORE).all()
    assert tensors["pixel_values"].shape[0] == sum(int(e.image_grid_thw.prod()) for e in batch)
    # one row of visual targets per visual token, in the same order as the image tokens
    assert tensors["visual_targets"].shape == (int(tensors["mm_token_type_ids"].sum()), NUM_TARGETS)
    plain = encode(builder, tokenizer, Image.new("RGB", (64, 64), "white"), [("question", "answer")])
    assert "visual_targets" not in collate([plain], tokenizer.pad_token_id)


def test_easy_share_one_draws_only_easy_charts(parts, monkeypatch):
    from vlserve.demo import dataset

    drawn = []
    real = dataset.draw_chart
    monkeypatch.setattr(dataset, "draw_chart", lambda chart, rng: drawn.append(chart) or real(chart, rng))
    stream = dataset.examples(*parts, random.Random(0), easy_share=lambda i: 1.0)
    for _ in range(5):
        next(stream)
    assert len(drawn) == 5 and all(dataset.is_easy(c) for c in drawn)
