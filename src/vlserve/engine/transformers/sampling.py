"""Per-request token choice: greedy argmax, or sampling with the request's own settings and generator.

Each row of the running batch owns a :class:`RowSampler` for its whole life (joins and leaves of
other rows do not touch it), so a seeded request draws the same tokens whatever its neighbours.
:func:`choose_tokens` picks every row's next token from the step's processed logits: argmax for
greedy rows (min-p never changes the most likely token, so vLLM ignores it there too), a draw with
temperature, min-p, top-k and top-p (vLLM's order) for the others.

A row whose every token is masked (``-inf``) gets ``end_token_id`` instead: its constraints
contradict each other, as when a grammar allows only the end of the answer while ``min_tokens`` or
``ignore_eos`` forbids it. The grammar is the hard constraint (the answer must parse) and the answer
is complete, so it ends there; sampling from an all ``-inf`` row would draw from NaN probabilities and
fail the whole batch, and greedy argmax would pick token 0.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import torch

from vlserve.engine.base import SamplingParams


def make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    return generator


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Draw one token id from a 1-D logits vector with temperature, min-p, top-k and top-p."""
    scores = logits.float().cpu() / max(params.temperature, 1e-5)
    if params.min_p > 0.0:  # after temperature: drop what is less likely than min_p x the most likely token
        probs = scores.softmax(-1)
        scores = scores.masked_fill(probs < params.min_p * probs.max(), float("-inf"))
    if 0 < params.top_k < scores.numel():
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_scores.softmax(-1) >= params.top_p  # keep the token that crosses top_p
        scores[order[drop]] = float("-inf")
    probs = scores.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


class RowSampler:
    """One sampling request's settings and its seeded generator, kept for the request's life."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.generator = make_generator(params.seed)

    @staticmethod
    def of(params: SamplingParams) -> RowSampler | None:
        """The sampler of a request, or None when it is greedy."""
        return None if params.greedy else RowSampler(params)

    def draw(self, logits: torch.Tensor) -> int:
        return sample_token(logits, self.params, self.generator)


def choose_tokens(
    scores: torch.Tensor, samplers: Sequence[RowSampler | None], end_token_id: int | None = None
) -> list[int]:
    """Each row's next token from its processed logits (rows x vocab); ``None``: a greedy row."""
    chosen = scores.argmax(-1)
    empty = torch.isneginf(scores).all(-1)
    if end_token_id is not None:  # vectorised: rows with a finite logit keep theirs
        chosen = chosen.masked_fill(empty, end_token_id)
    tokens = chosen.tolist()
    if any(s is not None for s in samplers):
        blocked = empty.tolist()
        for row, sampler in enumerate(samplers):
            if sampler is not None and not (blocked[row] and end_token_id is not None):
                tokens[row] = sampler.draw(scores[row])
    return tokens
