"""Per-row sampling: greedy rows untouched, seeded rows reproducible, top-k / top-p respected."""

from dataclasses import replace

import torch

from vlserve.engine.base import GREEDY
from vlserve.engine.transformers.sampling import RowSampler, sample_token


def test_greedy_rows_are_left_exactly_as_they_are():
    scores = torch.randn(2, 50)
    before = scores.clone()
    out = RowSampler([GREEDY, replace(GREEDY, temperature=0.0, top_k=1)])(torch.zeros(2, 1), scores)
    assert torch.equal(out, before)


def test_sampled_row_is_forced_to_one_token_and_greedy_row_untouched():
    scores = torch.randn(2, 50)
    greedy_row = scores[0].clone()
    out = RowSampler([GREEDY, replace(GREEDY, temperature=1.0, seed=3)])(torch.zeros(2, 1), scores)
    assert torch.equal(out[0], greedy_row)
    assert int(torch.isfinite(out[1]).sum()) == 1


def test_same_seed_gives_the_same_tokens():
    logits = torch.randn(100)
    params = replace(GREEDY, temperature=1.0, seed=42)
    first = [RowSampler([params])(None, logits[None].clone()).argmax().item() for _ in range(5)]
    second = [RowSampler([params])(None, logits[None].clone()).argmax().item() for _ in range(5)]
    assert first == second


def test_top_k_only_draws_from_the_k_best():
    logits = torch.arange(100, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    draws = {sample_token(logits, replace(GREEDY, temperature=5.0, top_k=3), gen) for _ in range(200)}
    assert draws <= {97, 98, 99}
    assert len(draws) > 1


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.05, 0.05]))
    gen = torch.Generator().manual_seed(0)
    draws = {sample_token(logits, replace(GREEDY, temperature=1.0, top_p=0.8), gen) for _ in range(300)}
    assert draws == {0, 1}


def test_min_p_drops_tokens_less_likely_than_min_p_times_the_top_one():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    gen = torch.Generator().manual_seed(0)
    draws = {sample_token(logits, replace(GREEDY, temperature=1.0, min_p=0.2), gen) for _ in range(400)}
    assert draws == {0, 1, 2}  # 0.05 < 0.2 x 0.5
    draws = {sample_token(logits, replace(GREEDY, temperature=1.0, min_p=1.0), gen) for _ in range(50)}
    assert draws == {0}


def test_min_p_applies_after_temperature():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    gen = torch.Generator().manual_seed(0)
    hot = replace(GREEDY, temperature=4.0, min_p=0.2)  # flattened: 0.05 is no longer below 0.2 x the top
    assert {sample_token(logits, hot, gen) for _ in range(400)} == {0, 1, 2, 3}


def test_min_p_leaves_greedy_rows_untouched():
    scores = torch.randn(1, 50)
    before = scores.clone()
    assert torch.equal(RowSampler([replace(GREEDY, min_p=0.9)])(None, scores), before)
