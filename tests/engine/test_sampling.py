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
