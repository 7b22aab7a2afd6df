"""Runs one batch of requests through a transformers ``generate`` call, streaming every row.

Prompts are left-padded into one tensor batch (images concatenated in row order). A stopping
criterion sees each new token as soon as it exists: it detokenises it, hands the text to that
request, and ends the row on end-of-sequence, one of its stop token ids, a stop string, its token
limit or the client going away. As in vLLM, the token that ended the answer (end-of-sequence or a
stop token id) is counted and returned among the token ids, but its text is only kept with
``include_stop_str_in_output``; each row decodes with its own special-token settings. Rows end
independently; the call returns when every row has ended.
Logits processors give each row its own settings inside the shared call: raw logprobs, then
bias / end-of-sequence masks / penalties, the grammar, and sampling last.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from vlserve.engine.base import Delta, SamplingParams, TokenLogprob, Usage
from vlserve.engine.transformers.detokenize import StreamDecoder
from vlserve.engine.transformers.grammar import GrammarCache, GrammarMask
from vlserve.engine.transformers.logprobs import LogprobCapture, TokenPieces
from vlserve.engine.transformers.penalties import RowPenalties
from vlserve.engine.transformers.prompting import Prompt
from vlserve.engine.transformers.sampling import RowSampler
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


class _Row:
    def __init__(self, request: GenerationRequest, decode: Callable[[list[int]], str], eos: Sequence[int]) -> None:
        params = request.params
        self.request = request
        self.decoder = StreamDecoder(decode, params.stop, include_stop=params.include_stop_str_in_output)
        self.stop_token_ids = frozenset((*eos, *params.stop_token_ids))  # the tokens that end this answer
        self.token_ids: list[int] = []
        self.logprobs: list[TokenLogprob] = []  # one per token id, when the request asks for logprobs
        self.sent = 0  # token ids already handed to the request with a delta
        self.done = False

    @property
    def generated(self) -> int:
        return len(self.token_ids)

    def _new_tokens(self) -> tuple[tuple[int, ...], tuple[TokenLogprob, ...]]:
        """The token ids (and their logprobs) not yet handed to the request."""
        start, self.sent = self.sent, len(self.token_ids)
        return tuple(self.token_ids[start:]), tuple(self.logprobs[start:])

    def emit(self, text: str) -> None:
        token_ids, logprobs = self._new_tokens()
        self.request.emit(Delta(text, token_ids=token_ids, logprobs=logprobs))

    def finish(self, text: str, reason: str) -> None:
        self.done = True
        prompt = self.request.prompt
        usage = Usage(prompt.num_tokens, self.generated, prompt.image_tokens)
        token_ids, logprobs = self._new_tokens()
        self.request.emit(Delta(text, reason, token_ids, usage, logprobs))  # type: ignore[arg-type]


class StreamingStop(StoppingCriteria):
    """Per-row end detection plus streaming of each new token (and its logprob) to its request."""

    def __init__(self, rows: list[_Row], logprobs: LogprobCapture | None = None) -> None:
        self._rows = rows
        self._logprobs = logprobs

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        last = input_ids[:, -1].tolist()
        live = [i for i, row in enumerate(self._rows) if not row.done]
        chosen = self._logprobs.take(last, live) if self._logprobs is not None else {}
        for i in live:
            self._advance(self._rows[i], last[i], chosen.get(i))
        return torch.tensor([row.done for row in self._rows], device=input_ids.device)

    def _advance(self, row: _Row, token: int, logprob: TokenLogprob | None) -> None:
        if row.request.cancelled.is_set():
            row.done = True
            log.info(
                "%s: generation stopped after %d tokens: the client went away", row.request.request_id, row.generated
            )
            return
        row.token_ids.append(token)
        if logprob is not None:
            row.logprobs.append(logprob)
        if token in row.stop_token_ids:  # its text only with include_stop_str_in_output, as vLLM
            text = row.decoder.push(token) if row.request.params.include_stop_str_in_output else ""
            row.finish(text + row.decoder.flush(), "stop")
            return
        text = row.decoder.push(token)
        if row.decoder.stopped:
            row.finish(text, "stop")
        elif row.generated >= row.request.max_tokens:
            row.finish(text + row.decoder.flush(), "length")
        elif text:
            row.emit(text)


class HFBatchRunner:
    def __init__(self, model: Any, tokenizer: Any, eos_token_ids: list[int], pad_token_id: int) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._eos = eos_token_ids
        self._pad = pad_token_id
        self.grammars = GrammarCache(tokenizer, model.config.get_text_config().vocab_size, eos_token_ids)
        self.pieces = TokenPieces(tokenizer)

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

    def run_batch(self, batch: Sequence[GenerationRequest]) -> None:
        rows = [_Row(request, self.decoder_for(request.params), self._eos) for request in batch]
        inputs = collate([r.prompt for r in batch], self._pad, self._model.device, self._model.dtype)
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max(r.max_tokens for r in batch),
            eos_token_id=self._eos,
            pad_token_id=self._pad,
            # Explicit, or generate() takes the checkpoint's (Qwen2.5-VL ships 1.05) and penalises every
            # row, padding included, ahead of our processors: penalties are per request, in RowPenalties.
            repetition_penalty=1.0,
        )
        capture = LogprobCapture([r.params for r in batch], self.pieces)
        with torch.inference_mode():
            self._model.generate(
                **inputs,
                generation_config=config,
                logits_processor=self._processors(batch, capture),
                stopping_criteria=StoppingCriteriaList([StreamingStop(rows, capture if capture.active else None)]),
            )
        for row in rows:  # a row can only be left open by a cancelled client
            if not row.done:
                row.finish(row.decoder.flush(), "length")

    def _processors(self, batch: Sequence[GenerationRequest], capture: LogprobCapture) -> LogitsProcessorList:
        """Raw logprobs first, then bias / eos masks / penalties, the grammar, and sampling last, so
        sampling only sees valid tokens; a stage no row in the batch uses is left out."""
        params = [r.params for r in batch]
        grammars = [
            self.grammars.for_request(r.prompt.request, r.params, reasoning=r.prompt.reasoning == "opened")
            for r in batch
        ]
        penalties = RowPenalties(params, [r.prompt.num_tokens for r in batch], self._eos)
        processors = LogitsProcessorList()
        if capture.active:
            processors.append(capture)
        if penalties.active:
            processors.append(penalties)
        if any(g is not None for g in grammars):
            processors.append(GrammarMask(grammars, self.grammars.vocab_size))
        processors.append(RowSampler(params, end_token_id=self._eos[0]))
        return processors
