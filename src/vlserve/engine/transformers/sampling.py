"""Per-request sampling inside one batched ``generate`` call.

``generate`` runs greedy (argmax) for the whole batch; :class:`RowSampler` is a logits processor
that, for each row asking for sampling, draws a token with that request's own temperature,
min-p, top-k, top-p and seeded generator (in vLLM's order), and masks every other token so the
argmax picks it. Greedy rows pass through untouched (min-p never changes the most likely token, so
vLLM ignores it there too), and batched greedy output equals single-request ``generate``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

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


class RowSampler(LogitsProcessor):
    """Applies each row's own sampling settings; rows that are greedy are left as they are.

    A row whose every token is masked (``-inf``) gets ``end_token_id`` instead: its constraints
    contradict each other, as when a grammar allows only the end of the answer while ``min_tokens`` or
    ``ignore_eos`` forbids it. The grammar is the hard constraint (the answer must parse) and the
    answer is complete, so it ends there; sampling from an all ``-inf`` row would draw from NaN
    probabilities and fail the whole batch, and greedy argmax would pick token 0.
    """

    def __init__(self, params: Sequence[SamplingParams], end_token_id: int | None = None) -> None:
        self._params = list(params)
        self._generators = [None if p.greedy else make_generator(p.seed) for p in self._params]
        self._end = end_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._end is not None:  # vectorised, no device sync: rows with a finite logit keep theirs
            empty = torch.isneginf(scores).all(-1)
            scores[:, self._end] = scores[:, self._end].masked_fill(empty, 0.0)
        for row, (params, generator) in enumerate(zip(self._params, self._generators, strict=True)):
            if generator is None:
                continue
            token = sample_token(scores[row], params, generator)
            scores[row].fill_(float("-inf"))
            scores[row, token] = 0.0
        return scores
