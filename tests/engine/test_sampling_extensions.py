"""vLLM's sampling extensions on the transformers engine with the demo checkpoint: min_p, stop_token_ids,
include_stop_str_in_output, skip_special_tokens and spaces_between_special_tokens each change the answer
as vLLM 0.32 defines them, row by row inside one batch; ids outside the vocabulary are refused."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tests.engine.running import RunningEngine, forward_logits, token_ids
from vlserve.engine.base import GREEDY, Delta
from vlserve.engine.transformers.checkpoint import load_checkpoint
from vlserve.errors import ClientError

QUESTION = "What are the values?"  # its greedy answer in tokens: 旅 (two) | at | " billion" | 亿元 | at | …
BILLION = 1009  # the demo tokenizer's " billion", the answer's fourth token
BOX_START = 2053  # <|box_start|>, a special token
IM_END = 2050  # <|im_end|>, the end of the answer


@pytest.fixture(scope="module")
def running(demo_model):
    engine = RunningEngine(demo_model, max_batch_size=8, batch_wait_ms=100)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def model(demo_model):
    return load_checkpoint(demo_model).model


def text(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def test_the_demo_answer_these_tests_rely_on(running):
    deltas = running.answer(running.prompt(QUESTION), replace(GREEDY, max_tokens=12))
    assert text(deltas).startswith("旅at billion亿元at")
    assert token_ids(deltas)[3] == BILLION and BILLION not in token_ids(deltas)[:3]


def test_a_stop_token_id_ends_its_own_answer_only_and_its_text_is_left_out_unless_asked(running):
    prompt = running.prompt(QUESTION)
    plain = replace(GREEDY, max_tokens=12)
    stopped = replace(plain, stop_token_ids=(BILLION, 7))
    cut, kept, neighbour = running.answers(
        [(prompt, stopped), (prompt, replace(stopped, include_stop_str_in_output=True)), (prompt, plain)]
    )
    assert running.engine.scheduler.batch_sizes[-1] == 3
    assert (text(cut), cut[-1].finish_reason) == ("旅at", "stop")
    assert (text(kept), kept[-1].finish_reason) == ("旅at billion", "stop")
    for deltas in (cut, kept):  # the stop token is generated, counted and returned, as vLLM does
        assert token_ids(deltas)[-1] == BILLION and deltas[-1].usage.completion_tokens == 4
    assert (len(token_ids(neighbour)), neighbour[-1].finish_reason) == (12, "length")


def test_min_tokens_holds_a_stop_token_id_back(running):
    prompt = running.prompt(QUESTION)
    deltas = running.answer(prompt, replace(GREEDY, max_tokens=12, stop_token_ids=(BILLION,), min_tokens=5))
    assert BILLION not in token_ids(deltas)[:5]


def test_an_included_stop_string_stays_in_the_text_streamed_or_whole(running):
    prompt = running.prompt(QUESTION)
    plain = replace(GREEDY, max_tokens=12, stop=("亿元",))
    for incremental in (True, False):
        cut, kept = running.answers(
            [(prompt, replace(plain, incremental=incremental)),
             (prompt, replace(plain, incremental=incremental, include_stop_str_in_output=True))]
        )  # fmt: skip
        assert (text(cut), cut[-1].finish_reason) == ("旅at billion", "stop")
        assert (text(kept), kept[-1].finish_reason) == ("旅at billion亿元", "stop")
        assert token_ids(kept)[-1] == 717  # 亿元, the token that completed the stop string


def test_special_tokens_the_model_writes_are_in_the_text_only_without_skip_special_tokens(running):
    prompt = running.prompt("hi")
    boxes = replace(GREEDY, max_tokens=3, logit_bias={BOX_START: 100.0})
    skipped, shown, unspaced = running.answers(
        [(prompt, boxes), (prompt, replace(boxes, skip_special_tokens=False)),
         (prompt, replace(boxes, skip_special_tokens=False, spaces_between_special_tokens=False))]
    )  # fmt: skip
    assert token_ids(skipped) == [BOX_START] * 3 and text(skipped) == ""
    assert text(shown) == "<|box_start|>" * 3
    # A byte-level BPE (Qwen's, the demo's) puts no space between added tokens: vLLM's answer is the same.
    assert text(unspaced) == "<|box_start|>" * 3


def test_the_end_token_is_in_the_text_only_when_included_and_not_skipped(running):
    prompt = running.prompt("hi")
    ends = replace(GREEDY, max_tokens=5, logit_bias={IM_END: 100.0})
    answers = running.answers(
        [(prompt, ends), (prompt, replace(ends, include_stop_str_in_output=True)),
         (prompt, replace(ends, skip_special_tokens=False)),
         (prompt, replace(ends, include_stop_str_in_output=True, skip_special_tokens=False))]
    )  # fmt: skip
    assert [text(a) for a in answers] == ["", "", "", "<|im_end|>"]
    assert all(a[-1].finish_reason == "stop" and token_ids(a) == [IM_END] for a in answers)


def test_min_p_keeps_every_sampled_token_within_min_p_of_the_most_likely(running, model):
    prompt = running.prompt(QUESTION)
    sampled = replace(GREEDY, temperature=1.0, seed=1, max_tokens=12)
    free, narrowed, greedy_like, greedy = running.answers(
        [(prompt, sampled), (prompt, replace(sampled, min_p=0.5)), (prompt, replace(sampled, min_p=1.0)),
         (prompt, replace(GREEDY, max_tokens=12))]
    )  # fmt: skip

    def ratios(deltas: list[Delta]) -> list[float]:
        """Each token's probability over the most likely token's, where it was drawn."""
        ids = token_ids(deltas)
        probs = forward_logits(model, prompt, ids[:-1]).softmax(-1)
        return [float(p[t] / p.max()) for p, t in zip(probs, ids, strict=True)]

    assert min(ratios(free)) < 0.5, "the free answer should draw an unlikely token, or this test shows nothing"
    assert min(ratios(narrowed)) >= 0.5 - 1e-4
    assert token_ids(greedy_like) == token_ids(greedy)  # min_p 1: only the most likely token is left


def test_stop_token_ids_outside_the_vocabulary_are_refused(running):
    prompt = running.prompt("hi")
    vocab = running.engine._runner.grammars.vocab_size
    asyncio.run(running.engine.check(prompt, replace(GREEDY, stop_token_ids=(vocab - 1,))))
    with pytest.raises(ClientError, match=f"token id {vocab}, outside") as refused:
        asyncio.run(running.engine.check(prompt, replace(GREEDY, stop_token_ids=(3, vocab))))
    assert refused.value.param == "stop_token_ids"
