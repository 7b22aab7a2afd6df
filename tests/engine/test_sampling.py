"""Per-row sampling: greedy rows take the argmax, seeded rows are reproducible, top-k / top-p respected."""

from dataclasses import replace

import torch

from vlserve.engine.base import GREEDY
from vlserve.engine.transformers.sampling import RowSampler, choose_tokens, sample_token


def test_greedy_rows_take_the_argmax_of_their_own_scores():
    scores = torch.randn(2, 50)
    before = scores.clone()
    samplers = [RowSampler.of(p) for p in (GREEDY, replace(GREEDY, temperature=0.0, top_k=1))]
    assert samplers == [None, None]
    assert choose_tokens(scores, samplers) == before.argmax(-1).tolist()
    assert torch.equal(scores, before)


def test_a_sampled_row_draws_with_its_own_generator_and_a_greedy_neighbour_is_untouched():
    scores = torch.randn(2, 50)
    sampled = replace(GREEDY, temperature=1.0, seed=3)
    tokens = choose_tokens(scores, [None, RowSampler(sampled)])
    assert tokens[0] == scores[0].argmax().item()
    assert tokens[1] == RowSampler(sampled).draw(scores[1])  # the same seed, the same first draw


def test_same_seed_gives_the_same_tokens_whatever_the_batch():
    logits = torch.randn(100)
    params = replace(GREEDY, temperature=1.0, seed=42)
    alone = RowSampler(params)
    first = [choose_tokens(logits[None].clone(), [alone])[0] for _ in range(5)]
    in_batch = RowSampler(params)
    noise = torch.randn(3, 100)
    second = [choose_tokens(torch.stack([noise[0], logits, noise[1]]), [None, in_batch, None])[1] for _ in range(5)]
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
    assert RowSampler.of(replace(GREEDY, min_p=0.9)) is None
    assert choose_tokens(scores, [None]) == [scores[0].argmax().item()]
