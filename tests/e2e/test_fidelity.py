"""Batching changes nothing: greedy output under concurrent load equals single-request `model.generate`.

24 different prompts and images (none, one or two images of varied sizes) hit the server at once, so
the scheduler batches them (max_batch_size 4: as rows end, waiting requests join the running batch
mid-decode); each answer's token ids must equal, token for token, a plain `generate` call on the same
checkpoint in this process. A second test sends requests (logprobs, a tool grammar, penalties) while a
long answer is decoding: joined to it, each answers exactly as it does alone.

Mixed into the same load are greedy requests with per-request logits settings (penalties,
logit_bias, min_tokens, ignore_eos), which the engine applies row by row inside the shared batch.
Their reference is `generate` on that request alone with transformers' own processors for the same
settings (SequenceBias, RepetitionPenalty, MinNewTokensLength, SuppressTokens) plus OpenAI's
presence/frequency formula, which transformers lacks, written out below.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageTextToText,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
)
from transformers.generation.logits_process import (
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    SuppressTokensLogitsProcessor,
)

from tests.e2e.server import FAST_IMAGES
from tests.support.images import chart, data_url, encode
from vlserve.engine.base import ChatTurn
from vlserve.engine.transformers.prompting import PromptBuilder
from vlserve.settings import Settings

pytestmark = pytest.mark.e2e

N_PROMPTS = 24
MAX_TOKENS = 24
EOS = "<|im_end|>"


def logits_settings(i: int, eos: int) -> dict:
    """The logits settings of case ``i``: every sixth case has some (its batch has plain neighbours)."""
    return {
        1: {"repetition_penalty": 1.3},
        7: {"presence_penalty": 1.0, "frequency_penalty": 0.5},
        13: {"logit_bias": {"22": 2.0, "64": -100.0}, "frequency_penalty": -0.4},
        19: {"min_tokens": 8, "logit_bias": {str(eos): 100.0}},
        22: {"ignore_eos": True, "logit_bias": {str(eos): 100.0}, "repetition_penalty": 0.9},
    }.get(i, {})


def case(i: int) -> tuple[str, list]:
    images = [chart(100 * i + k) for k in range(i % 3)]
    question = ["What are the values?", "Which bar is highest?", "请分析这张图，各年份的数值分别是多少？"][i % 3]
    return f"{question} (case {i})", images


def request_body(text: str, images: list, extra: dict) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": data_url(encode(im))}} for im in images]
    return {
        "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "return_token_ids": True,
        **extra,
    }


async def ask_all(url: str, eos: int) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        responses = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=request_body(*case(i), logits_settings(i, eos)))
                for i in range(N_PROMPTS)
            )
        )
    for r in responses:
        assert r.status_code == 200, r.text
    return [r.json() for r in responses]


class OpenAIPenalties(LogitsProcessor):
    """``logit -= frequency * count + presence * (count > 0)`` over the tokens generated after the prompt."""

    def __init__(self, prompt_length: int, presence: float, frequency: float) -> None:
        self.prompt_length, self.presence, self.frequency = prompt_length, presence, frequency

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :]
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


def processors(extra: dict, prompt_length: int, eos: list[int]) -> LogitsProcessorList:
    """transformers' processors for one request's settings, in vLLM's order."""
    found = LogitsProcessorList()
    if "logit_bias" in extra:
        found.append(SequenceBiasLogitsProcessor([[[int(t)], b] for t, b in extra["logit_bias"].items()]))
    if "min_tokens" in extra:
        found.append(MinNewTokensLengthLogitsProcessor(prompt_length, extra["min_tokens"], eos))
    if extra.get("ignore_eos"):
        found.append(SuppressTokensLogitsProcessor(eos))
    if "repetition_penalty" in extra:
        found.append(RepetitionPenaltyLogitsProcessor(extra["repetition_penalty"]))
    if "presence_penalty" in extra or "frequency_penalty" in extra:
        presence, frequency = extra.get("presence_penalty", 0.0), extra.get("frequency_penalty", 0.0)
        found.append(OpenAIPenalties(prompt_length, presence, frequency))
    return found


def reference(demo_model, settings: Settings) -> list[list[int]]:
    """Single-request greedy `generate`, one prompt at a time, no batching, no scheduler."""
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    processor = AutoImageProcessor.from_pretrained(demo_model)
    model = AutoModelForImageTextToText.from_pretrained(demo_model, dtype=torch.float32).eval()
    builder = PromptBuilder(
        tokenizer, processor, tokenizer.chat_template, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels
    )
    eos = model.generation_config.eos_token_id
    end = tokenizer.convert_tokens_to_ids(EOS)
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
        extra = processors(logits_settings(i, end), len(prompt.input_ids), eos)
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config, logits_processor=extra)
        outputs.append(out[0, len(prompt.input_ids) :].tolist())
    return outputs


def test_batched_greedy_equals_single_request_generate(start_server, demo_model):
    with ThreadPoolExecutor(1) as pool:  # the reference is computed here while the server loads
        single = pool.submit(reference, demo_model, Settings(**FAST_IMAGES))
        server = start_server(max_batch_size=4, batch_wait_ms=50)
        end = AutoTokenizer.from_pretrained(demo_model).convert_tokens_to_ids(EOS)
        answers = asyncio.run(ask_all(server.url, end))
        expected = single.result()
    assert "running batch of 4" in server.log(), "the load must actually have been batched"
    assert re.search(r"running batch of 4 \([1-3] joined", server.log()), "requests must have joined mid-decode"
    for i, (answer, tokens) in enumerate(zip(answers, expected, strict=True)):
        got = answer["choices"][0]["token_ids"]
        assert got == tokens, f"case {i} {logits_settings(i, end)}: batched {got} != single {tokens}"
        assert answer["usage"]["completion_tokens"] == len(tokens)
    assert len(expected[19]) == 9 and expected[19][-1] == end  # min_tokens held back an answer ending at once
    assert len(expected[22]) == MAX_TOKENS and end not in expected[22]  # ignore_eos ran it to the limit


# Requests that join a batch mid-decode answer exactly as they would alone.

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
LONG = {**request_body("Describe everything (the long one).", [chart(7)], {}), "max_tokens": 120, "ignore_eos": True}
JOINERS = [
    request_body(*case(2), {"logprobs": True, "top_logprobs": 3}),
    {
        **request_body("Weather in Oslo?", [], {}),
        **{"tools": [WEATHER], "tool_choice": "required", "logprobs": True, "max_tokens": 200},
    },
    request_body(*case(4), {"repetition_penalty": 1.2, "logprobs": True}),
    request_body(*case(9), {"min_tokens": 6}),
]


def answer_of(body: dict) -> dict:
    """What the comparison looks at: the token ids, their logprobs (when asked) and the tool calls."""
    choice = body["choices"][0]
    content = (choice.get("logprobs") or {}).get("content") or []
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or ()]
    return {"token_ids": choice["token_ids"], "logprobs": [e["logprob"] for e in content], "calls": calls}


async def join_mid_decode(url: str) -> tuple[list[int], list[dict]]:
    """The long request streams; once it has produced some tokens, the others are sent while it still runs."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        long_ids: list[int] = []
        joiners: asyncio.Future | None = None
        async with client.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as stream:
            async for line in stream.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                for choice in json.loads(line[6:])["choices"]:
                    long_ids += choice.get("token_ids") or []
                if joiners is None and len(long_ids) >= 4:
                    posts = (client.post("/v1/chat/completions", json=body) for body in JOINERS)
                    joiners = asyncio.ensure_future(asyncio.gather(*posts))
                    running_when_joined = len(long_ids)
        assert joiners is not None
        responses = await joiners
        for r in responses:
            assert r.status_code == 200, r.text
        assert running_when_joined < LONG["max_tokens"]
        return long_ids, [answer_of(r.json()) for r in responses]


async def one_at_a_time(url: str) -> tuple[list[int], list[dict]]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        long = await client.post("/v1/chat/completions", json=LONG)
        alone = [answer_of((await client.post("/v1/chat/completions", json=body)).json()) for body in JOINERS]
    return long.json()["choices"][0]["token_ids"], alone


def test_requests_joining_mid_decode_answer_exactly_as_they_would_alone(start_server):
    server = start_server(max_batch_size=4, batch_wait_ms=0)
    long_joined, joined = asyncio.run(join_mid_decode(server.url))
    log = server.log()
    long_alone, alone = asyncio.run(one_at_a_time(server.url))
    assert re.search(r"running batch of [2-5] \([1-4] joined", log), "the requests must have joined a running batch"
    assert long_joined == long_alone and len(long_alone) == LONG["max_tokens"]
    assert joined[1]["calls"] and joined[1]["calls"][0][0] == "get_weather"  # the tool grammar was in force
    for i, (got, want) in enumerate(zip(joined, alone, strict=True)):
        assert got["token_ids"] == want["token_ids"], f"joiner {i}: joined {got} != alone {want}"
        assert got["calls"] == want["calls"]
        assert got["logprobs"] == pytest.approx(want["logprobs"], abs=1e-4)
        assert len(got["logprobs"]) == (len(got["token_ids"]) if JOINERS[i].get("logprobs") else 0)
