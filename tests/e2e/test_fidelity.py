"""Batching changes nothing: greedy output under concurrent load equals single-request `model.generate`.

24 different prompts and images (none, one or two images of varied sizes) hit the server at once, so
the scheduler batches them (max_batch_size 4); each answer's token ids must equal, token for token,
a plain `generate` call on the same checkpoint in this process.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

from tests.e2e.server import FAST_IMAGES
from tests.support.images import chart, data_url, encode
from vlserve.engine.base import ChatTurn
from vlserve.engine.transformers.prompting import PromptBuilder
from vlserve.settings import Settings

pytestmark = pytest.mark.e2e

N_PROMPTS = 24
MAX_TOKENS = 24


def case(i: int) -> tuple[str, list]:
    images = [chart(100 * i + k) for k in range(i % 3)]
    question = ["What are the values?", "Which bar is highest?", "请分析这张图，各年份的数值分别是多少？"][i % 3]
    return f"{question} (case {i})", images


def request_body(text: str, images: list) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": data_url(encode(im))}} for im in images]
    return {
        "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "return_token_ids": True,
    }


async def ask_all(url: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=request_body(*case(i))) for i in range(N_PROMPTS))
        )
    for r in responses:
        assert r.status_code == 200, r.text
    return [r.json() for r in responses]


def reference(demo_model, settings: Settings) -> list[list[int]]:
    """Single-request greedy `generate`, one prompt at a time, no batching, no scheduler."""
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    processor = AutoImageProcessor.from_pretrained(demo_model)
    model = AutoModelForImageTextToText.from_pretrained(demo_model, dtype=torch.float32).eval()
    builder = PromptBuilder(
        tokenizer, processor, tokenizer.chat_template, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels
    )
    eos = model.generation_config.eos_token_id
    outputs = []
    for i in range(N_PROMPTS):
        text, images = case(i)
        parts = (*({"type": "image"} for _ in images), {"type": "text", "text": text})
        prompt = builder.build([ChatTurn("user", parts)], images)
        inputs = {
            "input_ids": torch.tensor([prompt.input_ids]),
            "mm_token_type_ids": torch.tensor([prompt.mm_token_type_ids]),
        }
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        inputs.update(prompt.image_inputs)
        config = GenerationConfig(
            do_sample=False, max_new_tokens=MAX_TOKENS, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
        )
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config)
        outputs.append(out[0, len(prompt.input_ids) :].tolist())
    return outputs


def test_batched_greedy_equals_single_request_generate(start_server, demo_model):
    server = start_server(max_batch_size=4, batch_wait_ms=50)
    answers = asyncio.run(ask_all(server.url))
    settings = Settings(**FAST_IMAGES)
    expected = reference(demo_model, settings)
    assert "running batch of 4" in server.log(), "the load must actually have been batched"
    for i, (answer, tokens) in enumerate(zip(answers, expected, strict=True)):
        got = answer["choices"][0]["token_ids"]
        assert got == tokens, f"case {i}: batched {got} != single {tokens}"
        assert answer["usage"]["completion_tokens"] == len(tokens)
