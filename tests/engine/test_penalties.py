"""Per-row logit_bias, min_tokens, ignore_eos and penalties: the arithmetic on small tensors, then the
engine on the demo checkpoint, answer for answer against a hand-written greedy loop."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest
import torch

from tests.engine.running import RunningEngine, forward_logits, token_ids
from vlserve.engine.base import GREEDY, SamplingParams
from vlserve.engine.transformers.checkpoint import load_checkpoint
from vlserve.engine.transformers.penalties import RowPenalties, adjust_row
from vlserve.engine.transformers.sampling import RowSampler, choose_tokens
from vlserve.structured import OutputFormat

EOS = [8, 9]
INF = float("-inf")


def adjusted(logits: list[float], prompt: list[int], output: list[int], **params: object) -> list[float]:
    row = torch.tensor(logits)
    adjust_row(row, torch.tensor(prompt, dtype=torch.long), torch.tensor(output, dtype=torch.long),
               replace(GREEDY, **params), EOS)  # fmt: skip
    return row.tolist()


def test_logit_bias_is_added_and_ids_outside_the_vocabulary_are_ignored():
    out = adjusted([1.0, 2.0, 3.0, 4.0], [], [], logit_bias={1: 0.5, 3: -100.0, 10: 5.0, 151_000: 1.0})
    assert out == [1.0, 2.5, 3.0, -96.0]


def test_repetition_penalty_divides_positive_and_multiplies_other_logits_of_prompt_and_output_tokens():
    out = adjusted([2.0, -2.0, 2.0, -2.0, 0.0], prompt=[0], output=[1, 4], repetition_penalty=2.0)
    assert out == [1.0, -4.0, 2.0, -2.0, 0.0]  # 2 and 3 never seen: untouched


def test_frequency_and_presence_penalties_count_generated_tokens_only():
    out = adjusted([1.0] * 4, prompt=[3, 3, 3], output=[0, 0, 0, 1], frequency_penalty=0.5, presence_penalty=0.25)
    assert out == [1.0 - 1.5 - 0.25, 1.0 - 0.5 - 0.25, 1.0, 1.0]  # the prompt's token 3 is not penalised


def test_negative_penalties_favour_repeats():
    out = adjusted([0.0] * 3, prompt=[], output=[2, 2], frequency_penalty=-1.0, presence_penalty=-0.5)
    assert out == [0.0, 0.0, 2.5]


def test_min_tokens_masks_eos_until_reached_and_ignore_eos_always():
    logits = [0.0] * 10
    assert adjusted(logits, [1], [2, 3], min_tokens=3)[8:] == [INF, INF]
    assert adjusted(logits, [1], [2, 3, 4], min_tokens=3)[8:] == [0.0, 0.0]
    assert adjusted(logits, [1], [2] * 50, ignore_eos=True)[8:] == [INF, INF]
    assert adjusted(logits, [1], [2, 3], logit_bias={8: 100.0}, min_tokens=3)[8] == INF  # the mask wins


def test_min_tokens_masks_the_stop_token_ids_too_and_ignore_eos_does_not():
    logits = [0.0] * 10
    assert adjusted(logits, [1], [2], min_tokens=2, stop_token_ids=(4, 5, 99))[3:6] == [0.0, INF, INF]
    assert adjusted(logits, [1], [2, 3], min_tokens=2, stop_token_ids=(4, 5))[3:6] == [0.0, 0.0, 0.0]
    assert adjusted(logits, [1], [2], ignore_eos=True, stop_token_ids=(4,))[4] == 0.0  # a stop id still ends it


def test_each_row_sees_only_its_own_prompt_and_output_and_plain_rows_have_none():
    params = replace(GREEDY, repetition_penalty=2.0, frequency_penalty=1.0)
    row = RowPenalties.of(params, [1, 2], EOS)
    assert row is not None and RowPenalties.of(GREEDY, [3, 4, 5, 6], EOS) is None
    logits = torch.full((10,), 1.0)
    row.apply(logits, [0])
    assert logits.tolist() == [-0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # 3-6 are another row's
    again = torch.full((10,), 1.0)
    row.apply(again, [0])
    assert torch.equal(again, logits)  # nothing carried over between steps but the tokens given


def test_min_tokens_counts_the_rows_own_generated_tokens():
    row = RowPenalties.of(replace(GREEDY, min_tokens=2), [1, 2, 3], EOS)
    assert row is not None
    logits = torch.zeros(10)
    row.apply(logits, [5])
    assert logits[8].item() == INF
    logits = torch.zeros(10)
    row.apply(logits, [5, 6])
    assert logits[8].item() == 0.0


def test_a_row_with_every_token_masked_ends_instead_of_failing_the_batch():
    scores = torch.tensor([[INF] * 5, [INF] * 5, [0.0, 1.0, INF, INF, INF]])
    sampled = replace(GREEDY, temperature=1.0, seed=1)
    tokens = choose_tokens(scores, [RowSampler(sampled), None, RowSampler(sampled)], end_token_id=3)
    assert tokens[:2] == [3, 3]  # sampled and greedy rows alike: the end token
    assert tokens[2] in (0, 1)
    assert choose_tokens(torch.tensor([[0.0, 2.0, 1.0]]), [None], end_token_id=0) == [1]


# The engine on the demo checkpoint.


@pytest.fixture(scope="module")
def running(demo_model):
    engine = RunningEngine(demo_model, max_batch_size=8, batch_wait_ms=100)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def model(demo_model):
    return load_checkpoint(demo_model).model


def reference_greedy(model, prompt, params: SamplingParams, eos: list[int], max_tokens: int) -> list[int]:
    """Greedy decoding written out by hand: one full forward pass per token, the formulas applied
    token by token (bias, eos masks, repetition over prompt and answer, OpenAI's penalties)."""
    out: list[int] = []
    while len(out) < max_tokens:
        logits = forward_logits(model, prompt, out)[-1].tolist()
        for token, bias in params.logit_bias.items():
            logits[token] += bias
        if params.ignore_eos or len(out) < params.min_tokens:
            for token in eos:
                logits[token] = INF
        r = params.repetition_penalty
        for token in set(prompt.input_ids) | set(out):
            logits[token] = logits[token] / r if logits[token] > 0 else logits[token] * r
        for token, count in Counter(out).items():
            logits[token] -= params.frequency_penalty * count + params.presence_penalty
        out.append(max(range(len(logits)), key=logits.__getitem__))
        if out[-1] in eos:
            break
    return out


def test_penalised_greedy_answers_in_one_batch_match_the_formulas_token_for_token(running, model):
    eos = running.engine._checkpoint.eos_token_ids
    questions = ["What are the values?", "Which bar is highest?", "请分析这张图", "hi"]
    settings = [
        {},
        {"repetition_penalty": 1.5},
        {"frequency_penalty": 0.6, "presence_penalty": 0.4},
        {"presence_penalty": -0.5, "logit_bias": {22: 1.0, 64: -2.0}},
        {"repetition_penalty": 0.8, "frequency_penalty": 0.3},
        {"min_tokens": 4, "logit_bias": {eos[0]: 100.0}},
    ]
    requests = [
        (running.prompt(questions[i % len(questions)]), replace(GREEDY, max_tokens=12, **s))
        for i, s in enumerate(settings)
    ]
    answers = running.answers(requests)
    assert running.engine.scheduler.batch_sizes[-1] == len(requests)
    for (prompt, params), deltas in zip(requests, answers, strict=True):
        assert token_ids(deltas) == reference_greedy(model, prompt, params, eos, 12), params
    assert len(token_ids(answers[-1])) == 5 and token_ids(answers[-1])[-1] == eos[0]


def test_logit_bias_of_100_makes_the_greedy_answer_that_token(running):
    deltas = running.answer(running.prompt("hi"), replace(GREEDY, max_tokens=6, logit_bias={22: 100.0}))
    assert "".join(d.text for d in deltas) == "777777"
    assert deltas[-1].finish_reason == "length"


def test_min_tokens_and_ignore_eos_hold_back_an_answer_that_would_end_at_once(running):
    eos = running.engine._checkpoint.eos_token_ids[0]
    prompt = running.prompt("hi")
    ends = replace(GREEDY, max_tokens=10, logit_bias={eos: 100.0})
    now, later, never = running.answers([(prompt, ends), (prompt, replace(ends, min_tokens=4)),
                                         (prompt, replace(ends, ignore_eos=True))])  # fmt: skip
    assert (now[-1].finish_reason, now[-1].usage.completion_tokens) == ("stop", 1)
    assert (later[-1].finish_reason, later[-1].usage.completion_tokens) == ("stop", 5)
    assert eos not in token_ids(later)[:4]
    assert (never[-1].finish_reason, never[-1].usage.completion_tokens) == ("length", 10)
    assert eos not in token_ids(never)


def test_penalties_make_a_looping_greedy_answer_repeat_less(running):
    prompt = running.prompt("What are the values?")
    plain, frequency, presence, repetition = running.answers(
        [
            (prompt, replace(GREEDY, max_tokens=24)),
            (prompt, replace(GREEDY, max_tokens=24, frequency_penalty=1.0)),
            (prompt, replace(GREEDY, max_tokens=24, presence_penalty=1.0)),
            (prompt, replace(GREEDY, max_tokens=24, repetition_penalty=2.0)),
        ]
    )
    most = max(Counter(token_ids(plain)).values())
    assert most >= 3, "the plain answer should loop, or this test shows nothing"
    for penalised in (frequency, presence, repetition):
        assert max(Counter(token_ids(penalised)).values()) < most


def test_a_json_answer_that_must_end_before_min_tokens_ends_valid_and_its_batch_survives(running):
    """The grammar allows only the end while min_tokens forbids it: the answer ends, complete and valid."""
    flag = OutputFormat.of("flag", {"type": "boolean"})
    prompt = running.prompt("ok?")
    contradictory = replace(GREEDY, max_tokens=20, min_tokens=15, output=flag)
    sampled, greedy, neighbour = running.answers(
        [(prompt, replace(contradictory, temperature=1.0, seed=5)), (prompt, contradictory),
         (prompt, replace(GREEDY, max_tokens=20))]
    )  # fmt: skip
    for deltas in (sampled, greedy):
        assert json.loads("".join(d.text for d in deltas)) in (True, False)
        assert deltas[-1].finish_reason == "stop"
    assert neighbour[-1].finish_reason in ("stop", "length")
