"""Token logprobs for the rows that ask for them, as vLLM reports them by default (``raw_logprobs``).

:class:`LogprobCapture` is the first stage of a decode step: it keeps the log-softmax of the
model's raw logits, before any bias, penalty, grammar mask or temperature, for the rows with
``logprobs`` only (a step where no row asks makes none, so other requests pay nothing). It is made per
step from the settings of the rows in the batch at that step (a row's settings are its request's).
Once the step's tokens are chosen, :meth:`LogprobCapture.take` gives each chosen token's
:class:`TokenLogprob`, with the ``top_logprobs`` most likely alternatives.

:class:`TokenPieces` gives a token's exact bytes: byte-level BPE (GPT-2's, Qwen's) spells each byte
as one printable character, so a token may hold part of a UTF-8 character, which no decoded text
shows; added and special tokens are their text's UTF-8.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import torch

from vlserve.engine.base import SamplingParams, TokenLogprob


@cache
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet reversed: printable character -> the byte it stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class TokenPieces:
    """Each token id's text and bytes, computed once per id (one per tokenizer, shared by batches)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._added = {int(i): str(t.content) for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
        self._cache: dict[int, tuple[str, tuple[int, ...]]] = {}

    def __call__(self, token_id: int) -> tuple[str, tuple[int, ...]]:
        piece = self._cache.get(token_id)
        if piece is None:
            data = self._bytes(token_id)
            piece = self._cache[token_id] = (data.decode("utf-8", errors="replace"), tuple(data))
        return piece

    def _bytes(self, token_id: int) -> bytes:
        if token_id in self._added:
            return self._added[token_id].encode()
        token = self._tokenizer.convert_ids_to_tokens(token_id)
        if token is None:  # an id past the tokenizer's vocabulary (the embedding is padded)
            return b""
        decoder = byte_decoder()
        return b"".join(bytes([decoder[c]]) if c in decoder else c.encode() for c in token)

    def logprob(self, token_id: int, logprob: float, top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
        text, data = self(token_id)
        return TokenLogprob(text, logprob, data, top)


class LogprobCapture:
    """Keeps the raw log-probabilities of the rows asking for logprobs (a new instance per step)."""

    def __init__(self, params: Sequence[SamplingParams], pieces: TokenPieces) -> None:
        self._rows = [row for row, p in enumerate(params) if p.logprobs]
        self._slot = {row: slot for slot, row in enumerate(self._rows)}
        self._top = {row: params[row].top_logprobs for row in self._rows}
        self._pieces = pieces
        self._logprobs: torch.Tensor | None = None  # (rows asking, vocab) at the last step
        self._best: tuple[list[list[float]], list[list[int]]] | None = None

    @property
    def active(self) -> bool:
        return bool(self._rows)

    def capture(self, scores: torch.Tensor) -> None:
        """Keep the asking rows' log-softmax of ``scores`` (rows x vocab), before anything changes them."""
        logprobs = scores[self._rows].float().log_softmax(-1)  # indexing copies: later processors do not touch it
        self._logprobs = logprobs
        k = min(max(self._top.values(), default=0), logprobs.shape[-1])
        self._best = None
        if k:
            values, ids = logprobs.topk(k, dim=-1)  # sorted, most likely first
            self._best = (values.tolist(), ids.tolist())

    def take(self, tokens: Sequence[int], rows: Iterable[int]) -> dict[int, TokenLogprob]:
        """The TokenLogprob of each of ``rows`` (those asking) for its chosen token at the last step.

        ``tokens`` are the step's chosen tokens, one per batch row.
        """
        if self._logprobs is None:
            return {}
        wanted = [row for row in rows if row in self._slot]
        if not wanted:
            return {}
        slots = torch.tensor([self._slot[row] for row in wanted], device=self._logprobs.device)
        chosen = torch.tensor([tokens[row] for row in wanted], device=self._logprobs.device)
        values = self._logprobs[slots, chosen].tolist()
        result = {}
        for row, token, value in zip(wanted, chosen.tolist(), values, strict=True):
            top: tuple[TokenLogprob, ...] = ()
            n = self._top[row]
            if self._best is not None and n:
                best_values, best_ids = self._best[0][self._slot[row]][:n], self._best[1][self._slot[row]][:n]
                top = tuple(self._pieces.logprob(i, v) for i, v in zip(best_ids, best_values, strict=True))
            result[row] = self._pieces.logprob(token, value, top)
        return result
