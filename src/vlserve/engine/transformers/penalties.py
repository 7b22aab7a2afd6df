"""Per-row logit adjustments in the running batch: logit_bias, end-of-sequence masks, penalties.

Each request in the batch keeps its own settings, applied in vLLM's order and with its formulas:

1. ``logit_bias`` is added to the logits (ids outside the vocabulary are ignored, never an error
   that would fail the whole batch);
2. the end-of-sequence ids, and the request's ``stop_token_ids``, are masked while the row has fewer
   than ``min_tokens`` tokens (vLLM's min-tokens processor masks both); the end-of-sequence ids for
   the whole answer with ``ignore_eos``. vLLM lets an ignored eos be sampled and goes on; here
   a row ends at eos, so the row runs to its token limit by never choosing it (stop strings and
   stop token ids still end it);
3. ``repetition_penalty`` over the row's prompt and generated tokens (a positive logit is divided by
   it, any other multiplied, as vLLM and transformers do);
4. ``frequency_penalty`` and ``presence_penalty`` over the generated tokens only, OpenAI's formula
   ``logit -= frequency * count + presence * (count > 0)``.

Each row that asks for any of these owns a :class:`RowPenalties` for its life in the batch: its
settings and its own prompt ids (never the padding); the step passes it the tokens it generated so
far. So its result never depends on its batch neighbours, or on when they joined or left. Rows that
use none of these are not touched at all, so batched greedy output still equals single-request
``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

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


class RowPenalties:
    """One request's bias, eos masks and penalties, over its own prompt and generated tokens."""

    def __init__(self, params: SamplingParams, prompt_ids: Sequence[int], eos_token_ids: Sequence[int]) -> None:
        self.params = params
        self._prompt_ids = list(prompt_ids)
        self._prompt: torch.Tensor | None = None  # on the logits' device, made at the first step
        self._eos = list(eos_token_ids)

    @staticmethod
    def of(params: SamplingParams, prompt_ids: Sequence[int], eos_token_ids: Sequence[int]) -> RowPenalties | None:
        """The adjustments of a request, or None when it asks for none."""
        return RowPenalties(params, prompt_ids, eos_token_ids) if adjusts(params) else None

    def apply(self, logits: torch.Tensor, generated: Sequence[int]) -> None:
        """Adjust this row's 1-D logits in place, given the tokens it has generated so far."""
        if self._prompt is None or self._prompt.device != logits.device:
            self._prompt = torch.tensor(self._prompt_ids, dtype=torch.long, device=logits.device)
        output = torch.tensor(list(generated), dtype=torch.long, device=logits.device)
        adjust_row(logits, self._prompt, output, self.params, self._eos)
