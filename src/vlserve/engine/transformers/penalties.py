"""Per-row logit adjustments inside one batched ``generate``: logit_bias, end-of-sequence masks, penalties.

Each request in the batch keeps its own settings, applied in vLLM's order and with its formulas:

1. ``logit_bias`` is added to the logits (ids outside the vocabulary are ignored, never an error
   that would fail the whole batch);
2. the end-of-sequence ids, and the request's ``stop_token_ids``, are masked while the row has fewer
   than ``min_tokens`` tokens (vLLM's min-tokens processor masks both); the end-of-sequence ids for
   the whole answer with ``ignore_eos``. vLLM lets an ignored eos be sampled and goes on; here
   ``generate`` ends a row at eos, so the row runs to its token limit by never choosing it (stop
   strings and stop token ids still end it);
3. ``repetition_penalty`` over the row's prompt and generated tokens (a positive logit is divided by
   it, any other multiplied, as vLLM and transformers do);
4. ``frequency_penalty`` and ``presence_penalty`` over the generated tokens only, OpenAI's formula
   ``logit -= frequency * count + presence * (count > 0)``.

A row sees only its own tokens: the prompt span without the left padding, then what it generated.
So its result never depends on its batch neighbours, and the processor is a pure function of
``input_ids`` (no state carried between steps). Rows that use none of these are not touched at all,
so batched greedy output still equals single-request ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from vlserve.engine.base import SamplingParams


def adjusts(params: SamplingParams) -> bool:
    """Whether this request asks for anything this module does."""
    return bool(
        params.logit_bias
        or params.min_tokens > 0
        or params.ignore_eos
        or params.repetition_penalty != 1.0
        or params.presence_penalty != 0.0
        or params.frequency_penalty != 0.0
    )


def adjust_row(
    logits: torch.Tensor,
    prompt: torch.Tensor,
    output: torch.Tensor,
    params: SamplingParams,
    eos_token_ids: Sequence[int],
) -> None:
    """Adjust one row's 1-D float logits in place, from its prompt and generated token ids."""
    vocab = logits.numel()
    if params.logit_bias:
        biased = [(token, bias) for token, bias in params.logit_bias.items() if 0 <= token < vocab]
        if biased:
            ids = torch.tensor([t for t, _ in biased], device=logits.device)
            logits[ids] += torch.tensor([b for _, b in biased], dtype=logits.dtype, device=logits.device)
    early = output.numel() < params.min_tokens
    if params.ignore_eos or early:
        logits[[t for t in eos_token_ids if t < vocab]] = float("-inf")
    if early and params.stop_token_ids:
        logits[[t for t in params.stop_token_ids if 0 <= t < vocab]] = float("-inf")
    if params.repetition_penalty != 1.0:
        seen = torch.zeros(vocab, dtype=torch.bool, device=logits.device)
        seen[prompt] = True
        seen[output] = True
        penalty = params.repetition_penalty
        logits.copy_(torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits))
    if params.frequency_penalty != 0.0 or params.presence_penalty != 0.0:
        counts = torch.bincount(output, minlength=vocab)[:vocab].to(logits.dtype)
        logits -= params.frequency_penalty * counts
        logits -= params.presence_penalty * (counts > 0).to(logits.dtype)


class RowPenalties(LogitsProcessor):
    """Applies each row's bias, eos masks and penalties (a new instance per ``generate`` call).

    ``prompt_lengths`` are the rows' real prompt lengths; the batch is left-padded to the longest,
    so row ``i``'s prompt is ``input_ids[i, width - prompt_lengths[i] : width]`` and everything from
    ``width`` on is generated.
    """

    def __init__(
        self, params: Sequence[SamplingParams], prompt_lengths: Sequence[int], eos_token_ids: Sequence[int]
    ) -> None:
        self._width = max(prompt_lengths)
        self._rows = [(row, p, n) for row, (p, n) in enumerate(zip(params, prompt_lengths, strict=True)) if adjusts(p)]
        self._eos = list(eos_token_ids)

    @property
    def active(self) -> bool:
        """False when no row asks for anything: the processor need not be in the list at all."""
        return bool(self._rows)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, params, prompt_length in self._rows:
            prompt = input_ids[row, self._width - prompt_length : self._width]
            adjust_row(scores[row], prompt, input_ids[row, self._width :], params, self._eos)
        return scores
