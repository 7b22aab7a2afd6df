"""Continuous batching on a transformers model: our own decode loop, no ``generate``.

The scheduler's worker thread drives :class:`HFBatchRunner` between steps:

- :meth:`HFBatchRunner.add` prefills the requests joining together in one forward pass, left-padded
  exactly as ``generate`` would pad them (:func:`collate`), so the model computes their M-RoPE
  positions (``rope_deltas``) from the attention mask and their images; their last-position logits
  give each its first token, streamed at once; then their KV cache is merged into the running
  batch's (:mod:`~vlserve.engine.transformers.batch_cache`). The running rows are not recomputed;
- :meth:`HFBatchRunner.step` feeds every row its last token (one forward pass over the batch with
  the 2-D padding mask and each row's own position ids), and the stages of
  :func:`~vlserve.engine.transformers.rows.next_tokens` choose each row's next token;
- a row ends on end-of-sequence, one of its stop token ids, a stop string, its token limit or the
  client going away, and leaves the batch at once, its slot free for the next step.

Every row's arithmetic is its own (per-row positions, masks, samplers, matchers and penalties), so
greedy answers equal single-request ``generate`` token for token, whenever a row joined.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import DynamicCache

from vlserve.engine.base import SamplingParams
from vlserve.engine.transformers.batch_cache import BatchState
from vlserve.engine.transformers.grammar import GrammarCache
from vlserve.engine.transformers.logprobs import TokenPieces
from vlserve.engine.transformers.prompting import Prompt
from vlserve.engine.transformers.rows import Row, next_tokens
from vlserve.engine.transformers.scheduler import GenerationRequest

log = logging.getLogger("vlserve.engine")


def collate(prompts: Sequence[Prompt], pad_token_id: int, device: torch.device, dtype: torch.dtype) -> dict:
    """Left-pad token ids; concatenate image and video patches and grids in row order."""
    width = max(p.num_tokens for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    types = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        n = prompt.num_tokens
        ids[row, width - n :] = torch.tensor(prompt.input_ids)
        mask[row, width - n :] = 1
        types[row, width - n :] = torch.tensor(prompt.mm_token_type_ids)
    batch: dict[str, Any] = {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "mm_token_type_ids": types.to(device),
    }
    for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        parts = [p.image_inputs[key] for p in prompts if key in p.image_inputs]
        if parts:
            joined = torch.cat(parts)
            batch[key] = joined.to(device, dtype) if key.startswith("pixel_values") else joined.to(device)
    return batch


class HFBatchRunner:
    """The running batch of one model; not thread-safe: one worker thread drives it."""

    def __init__(self, model: Any, tokenizer: Any, eos_token_ids: list[int], pad_token_id: int) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._eos = eos_token_ids
        self._pad = pad_token_id
        self.grammars = GrammarCache(tokenizer, model.config.get_text_config().vocab_size, eos_token_ids)
        self.pieces = TokenPieces(tokenizer)
        self._rows: list[Row] = []  # the running batch, in the cache's row order
        self._pending: list[int] = []  # each row's last token, fed at the next step
        self._state: BatchState | None = None
        self.steps = 0  # decode steps run so far

    def decode(
        self, token_ids: list[int], skip_special_tokens: bool = True, spaces_between_special_tokens: bool = True
    ) -> str:
        # spaces_between_special_tokens is honoured by slow (Python) tokenizers; a fast tokenizer's decode
        # takes it and changes nothing. vLLM's fast path only drops a space its decoder put between two
        # added tokens, and a byte-level BPE (every Qwen-VL tokenizer) decodes an added token as its
        # bare content, so there is never such a space: the answer is the same either way, as on vLLM.
        return self._tokenizer.decode(
            token_ids,
            skip_special_tokens=skip_special_tokens,
            spaces_between_special_tokens=spaces_between_special_tokens,
        )

    def decoder_for(self, params: SamplingParams) -> Callable[[list[int]], str]:
        """Token ids to text with this request's special-token settings."""
        return functools.partial(
            self.decode,
            skip_special_tokens=params.skip_special_tokens,
            spaces_between_special_tokens=params.spaces_between_special_tokens,
        )

    def add(self, requests: Sequence[GenerationRequest]) -> None:
        """Prefill ``requests`` together, stream each one's first token and merge them into the batch."""
        rows = [self._row(request) for request in requests]
        model = self._model
        inputs = collate([r.prompt for r in requests], self._pad, model.device, model.dtype)
        # generate()'s own positions: text positions from the mask, M-RoPE ones from the images (rope_deltas)
        positions = model._prepare_position_ids_for_generation(inputs["input_ids"], dict(inputs))
        cache = DynamicCache(config=model.config.get_text_config(decoder=True))
        with torch.inference_mode():
            out = model(**inputs, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
        joined = BatchState.after_prefill(cache, inputs["attention_mask"], positions)
        scores = out.logits[:, -1, :].to(dtype=torch.float32, copy=True)
        tokens = self._advance(rows, scores)
        if self._state is None:
            self._state, self._rows, self._pending = joined, rows, tokens
        else:
            self._state.merge(joined)
            self._rows += rows
            self._pending += tokens
        self._leave()

    def step(self) -> None:
        """One decode step for every row in the batch; rows that end leave it."""
        self._leave()
        if self._state is None:
            return
        tokens = torch.tensor(self._pending, dtype=torch.long, device=self._model.device)
        with torch.inference_mode():
            out = self._model(**self._state.step_inputs(tokens), use_cache=True)
        scores = out.logits[:, -1, :].to(dtype=torch.float32, copy=True)
        self._pending = self._advance(self._rows, scores)
        self.steps += 1
        self._leave()

    @property
    def size(self) -> int:
        """Rows in the running batch."""
        return len(self._rows)

    @property
    def requests(self) -> list[GenerationRequest]:
        return [row.request for row in self._rows]

    def clear(self) -> list[GenerationRequest]:
        """Drop the whole batch (after a failed step); returns the requests that had not ended."""
        left = [row.request for row in self._rows if not row.done]
        self._rows, self._pending, self._state = [], [], None
        return left

    def _row(self, request: GenerationRequest) -> Row:
        prompt = request.prompt
        grammar = self.grammars.for_request(prompt.request, request.params, reasoning=prompt.reasoning == "opened")
        return Row(request, self.decoder_for(request.params), self._eos, grammar)

    def _advance(self, rows: Sequence[Row], scores: torch.Tensor) -> list[int]:
        tokens, logprobs = next_tokens(
            scores, rows, pieces=self.pieces, vocab_size=self.grammars.vocab_size, end_token_id=self._eos[0]
        )
        for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            row.advance(token, logprobs.get(i))
        return tokens

    def _leave(self) -> None:
        """Rows that have ended, or whose client went away, leave the batch."""
        keep = [i for i, row in enumerate(self._rows) if not row.gone()]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self.clear()
            return
        assert self._state is not None
        self._state.keep(keep)
        self._rows = [self._rows[i] for i in keep]
        self._pending = [self._pending[i] for i in keep]
