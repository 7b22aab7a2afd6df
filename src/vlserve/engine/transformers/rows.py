"""One request's life in the running batch, and the stages that turn a step's logits into its tokens.

A :class:`Row` owns everything per request that must survive other rows joining and leaving: its
stream decoder (stop strings), the tokens and logprobs it produced, its seeded sampler, its grammar
matcher and its penalty settings over its own prompt. :func:`next_tokens` runs one step's stages
over the rows in the batch at that step, in vLLM's order: raw logprobs first, then bias /
end-of-sequence masks / penalties, the grammar, and sampling last, so sampling only sees valid
tokens; a stage no row uses costs nothing.

As in vLLM, the token that ended the answer (end-of-sequence or a stop token id) is counted and
returned among the token ids, but its text is only kept with ``include_stop_str_in_output``; each row
decodes with its own special-token settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import xgrammar as xgr

from vlserve.engine.base import Delta, TokenLogprob, Usage
from vlserve.engine.transformers.detokenize import StreamDecoder
from vlserve.engine.transformers.grammar import RowGrammar, mask_rows
from vlserve.engine.transformers.logprobs import LogprobCapture, TokenPieces
from vlserve.engine.transformers.penalties import RowPenalties
from vlserve.engine.transformers.sampling import RowSampler, choose_tokens
from vlserve.engine.transformers.scheduler import GenerationRequest

log = logging.getLogger("vlserve.engine")


class Row:
    def __init__(
        self,
        request: GenerationRequest,
        decode: Callable[[list[int]], str],
        eos: Sequence[int],
        grammar: xgr.CompiledGrammar | None = None,
    ) -> None:
        params = request.params
        self.request = request
        self.params = params
        self.decoder = StreamDecoder(decode, params.stop, include_stop=params.include_stop_str_in_output)
        self.stop_token_ids = frozenset((*eos, *params.stop_token_ids))  # the tokens that end this answer
        self.sampler = RowSampler.of(params)
        self.penalties = RowPenalties.of(params, request.prompt.input_ids, eos)
        self.grammar = None if grammar is None else RowGrammar(grammar)
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

    def gone(self) -> bool:
        """Whether the client went away; the row is then done, without a last delta."""
        if self.request.cancelled.is_set() and not self.done:
            self.done = True
            log.info(
                "%s: generation stopped after %d tokens: the client went away", self.request.request_id, self.generated
            )
        return self.done

    def advance(self, token: int, logprob: TokenLogprob | None) -> None:
        """Take the row's next token: stream its text, or end the answer."""
        if self.gone():
            return
        self.token_ids.append(token)
        if logprob is not None:
            self.logprobs.append(logprob)
        if token in self.stop_token_ids:  # its text only with include_stop_str_in_output, as vLLM
            text = self.decoder.push(token) if self.params.include_stop_str_in_output else ""
            self.finish(text + self.decoder.flush(), "stop")
            return
        text = self.decoder.push(token)
        if self.decoder.stopped:
            self.finish(text, "stop")
        elif self.generated >= self.request.max_tokens:
            self.finish(text + self.decoder.flush(), "length")
        elif text:
            self.emit(text)


def next_tokens(
    scores: torch.Tensor, rows: Sequence[Row], *, pieces: TokenPieces, vocab_size: int, end_token_id: int
) -> tuple[list[int], dict[int, TokenLogprob]]:
    """Each row's next token from the step's float32 logits (rows x vocab, changed in place), and the
    logprobs of the rows asking for them, by row index."""
    capture = LogprobCapture([row.params for row in rows], pieces)
    if capture.active:
        capture.capture(scores)
    for i, row in enumerate(rows):
        if row.penalties is not None:
            row.penalties.apply(scores[i], row.token_ids)
    mask_rows(scores, [row.grammar for row in rows], vocab_size)
    tokens = choose_tokens(scores, [row.sampler for row in rows], end_token_id)
    for row, token in zip(rows, tokens, strict=True):
        if row.grammar is not None:
            row.grammar.accept(token)
    return tokens, capture.take(tokens, range(len(rows))) if capture.active else {}
