"""Grammar-constrained decoding with xgrammar: JSON answers and tool calls that parse, by construction.

:class:`GrammarCache` compiles an :class:`~vlserve.structured.OutputFormat`, or a request's tools and
tool choice (an xgrammar structural tag in Qwen's ``<tool_call>`` format, see
:mod:`vlserve.engine.transformers.tool_calls`), into a token-level grammar for the served tokenizer
(compiled grammars are cached by xgrammar). :class:`GrammarMask` is
a logits processor for one batched ``generate`` call: each row with a format gets its own matcher, which
masks every token that cannot continue a valid answer; rows without a format pass through untouched.
The answer is compact JSON with ``", "`` and ``": "`` separators, the form the demo model was trained on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import xgrammar as xgr
from transformers import LogitsProcessor

from vlserve.engine.base import EngineRequest, SamplingParams
from vlserve.engine.transformers.tool_calls import structural_tag
from vlserve.errors import ClientError
from vlserve.structured import OutputFormat

_CACHE_BYTES = 64 * 2**20
_NATIVE_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")  # "[06:50:01] /path/file.cc:4944: "


class GrammarCache:
    """Compiles output formats for one tokenizer; thread-safe (xgrammar's compiler locks its cache)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids))
        self._compiler = xgr.GrammarCompiler(info, max_threads=2, cache_limit_bytes=_CACHE_BYTES)
        self.vocab_size = vocab_size

    def compile(self, output: OutputFormat) -> xgr.CompiledGrammar:
        """The grammar for ``output``; ClientError when the schema uses something it cannot enforce."""
        try:
            return self._compiler.compile_json_schema(
                output.schema_json, any_whitespace=False, separators=(", ", ": "), strict_mode=True
            )
        except (RuntimeError, ValueError) as exc:
            raise _unenforceable("the JSON Schema", exc, "response_format.json_schema.schema") from None

    def compile_tools(self, request: EngineRequest) -> xgr.CompiledGrammar:
        """The grammar of an answer to a request with tools: text and/or tool calls, as tool_choice allows."""
        try:
            return self._compiler.compile_structural_tag(structural_tag(request))
        except (RuntimeError, ValueError, xgr.InvalidStructuralTagError) as exc:
            raise _unenforceable("the tools' parameter schemas", exc, "tools") from None

    def for_request(self, request: EngineRequest, params: SamplingParams) -> xgr.CompiledGrammar | None:
        """The grammar that constrains this request's answer, if any."""
        if params.output is not None:
            return self.compile(params.output)
        if request.calls_tools:
            return self.compile_tools(request)
        return None


def _unenforceable(what: str, exc: Exception, param: str) -> ClientError:
    text = str(exc).strip()
    reason = _NATIVE_PREFIX.sub("", text.splitlines()[0] if text else "")
    return ClientError(
        f"{what} cannot be enforced while decoding: {reason or type(exc).__name__}",
        param=param,
        code="unenforceable_schema",
    )


class GrammarMask(LogitsProcessor):
    """Per-row grammar masks for one ``generate`` call (a new instance per call)."""

    def __init__(self, grammars: Sequence[xgr.CompiledGrammar | None], vocab_size: int) -> None:
        self._matchers: list[xgr.GrammarMatcher | None] = [
            None if g is None else xgr.GrammarMatcher(g) for g in grammars
        ]
        self._bitmask = xgr.allocate_token_bitmask(len(self._matchers), vocab_size)
        self._vocab_size = vocab_size
        self._started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = []
        for row, matcher in enumerate(self._matchers):
            if matcher is None or matcher.is_terminated():
                continue
            if self._started and not matcher.accept_token(int(input_ids[row, -1])):
                # Only a row that has already ended (token limit, client gone) gets a token off the grammar.
                self._matchers[row] = None
                continue
            if matcher.is_terminated():  # it has just accepted the end-of-answer token
                continue
            matcher.fill_next_token_bitmask(self._bitmask, row)
            rows.append(row)
        self._started = True
        if rows:
            bitmask = self._bitmask.to(scores.device)
            xgr.apply_token_bitmask_inplace(scores, bitmask, vocab_size=self._vocab_size, indices=rows)
        return scores
