"""Grammar-constrained decoding with xgrammar: JSON answers and tool calls that parse, by construction.

:class:`GrammarCache` compiles an :class:`~vlserve.structured.OutputFormat`, or a request's tools and
tool choice (an xgrammar structural tag in Qwen's ``<tool_call>`` format, see
:mod:`vlserve.engine.transformers.tool_calls`), into a token-level grammar for the served tokenizer
(compiled grammars are cached by xgrammar). A format is a JSON Schema, or one of vLLM's ``structured_outputs``:
a regex, a choice of strings, an EBNF grammar or a structural tag (:func:`answer_grammar`).  A row with a format
owns a :class:`RowGrammar` (its xgrammar matcher) for its life in the running batch;
:func:`mask_rows` masks, in each such row, every token that cannot continue a valid answer, and rows
without a format pass through untouched.
The answer is compact JSON with ``", "`` and ``": "`` separators, the form the demo model was trained on.

A reasoning model's prompt opens a ``<think>`` block: the grammar then lets it reason freely and starts
after ``</think>`` and the blank line its template puts there (:func:`after_reasoning`), so the format applies
to the answer, never to the reasoning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import xgrammar as xgr
from xgrammar.structural_tag import AnyTextFormat, ConstStringFormat, SequenceFormat, StructuralTag, TagFormat

from vlserve.engine.base import EngineRequest, SamplingParams
from vlserve.engine.reasoning import ANSWER_SEPARATOR, THINK_END
from vlserve.engine.transformers.tool_calls import structural_tag
from vlserve.errors import ClientError
from vlserve.structured import OutputFormat
from vlserve.structured.outputs import choice_grammar

_CACHE_BYTES = 64 * 2**20
# JSON answers: no free whitespace, ", " and ": " separators, no property a schema does not declare.
_JSON_STYLE: dict[str, Any] = {"any_whitespace": False, "separators": (", ", ": "), "strict_mode": True}
_WHAT = {
    "json": "the JSON Schema",
    "regex": "the regular expression",
    "choice": "the choices",
    "grammar": "the grammar",
    "structural_tag": "the structural tag",
}
_NATIVE_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")  # "[06:50:01] /path/file.cc:4944: "


class GrammarCache:
    """Compiles output formats for one tokenizer; thread-safe (xgrammar's compiler locks its cache)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids))
        self._compiler = xgr.GrammarCompiler(info, max_threads=2, cache_limit_bytes=_CACHE_BYTES)
        self.vocab_size = vocab_size

    def compile(self, output: OutputFormat) -> xgr.CompiledGrammar:
        """The grammar for ``output``, by its kind (compiled once, then from xgrammar's cache, keyed by kind and
        source); ClientError when it uses something the grammar cannot enforce."""
        compiler = self._compiler
        try:
            if output.kind == "json":
                return compiler.compile_json_schema(output.schema_json, **_JSON_STYLE)
            if output.kind == "regex":
                return compiler.compile_regex(output.source)
            if output.kind == "structural_tag":
                return compiler.compile_structural_tag(output.source)
            return compiler.compile_grammar(_ebnf(output))
        except (RuntimeError, ValueError) as exc:  # xgrammar's InvalidStructuralTagError is a RuntimeError
            raise _unenforceable(_WHAT[output.kind], exc, output.param) from None

    def compile_tools(self, request: EngineRequest) -> xgr.CompiledGrammar:
        """The grammar of an answer to a request with tools: text and/or tool calls, as tool_choice allows."""
        try:
            return self._compiler.compile_structural_tag(structural_tag(request))
        except (RuntimeError, ValueError, xgr.InvalidStructuralTagError) as exc:
            raise _unenforceable("the tools' parameter schemas", exc, "tools") from None

    def for_request(
        self, request: EngineRequest, params: SamplingParams, *, reasoning: bool = False
    ) -> xgr.CompiledGrammar | None:
        """The grammar that constrains this request's answer, if any; ``reasoning``: the answer begins inside
        an open ``<think>`` block, left free up to its end."""
        if reasoning and (params.output is not None or request.calls_tools):
            return self._after_reasoning(request, params)
        if params.output is not None:
            return self.compile(params.output)
        if request.calls_tools:
            return self.compile_tools(request)
        return None

    def _after_reasoning(self, request: EngineRequest, params: SamplingParams) -> xgr.CompiledGrammar:
        if params.output is not None:
            answer = answer_grammar(params.output)
        else:
            try:
                answer = xgr.Grammar.from_structural_tag(structural_tag(request))
            except (RuntimeError, ValueError, xgr.InvalidStructuralTagError) as exc:
                raise _unenforceable("the tools' parameter schemas", exc, "tools") from None
        return self._compiler.compile_grammar(after_reasoning(answer))


def answer_grammar(output: OutputFormat) -> xgr.Grammar:
    """The grammar of an answer in ``output``'s format, by its kind, to build on (uncompiled; ``compile``
    compiles the same grammar straight from the source); ClientError when it cannot be enforced."""
    try:
        if output.kind == "json":
            return xgr.Grammar.from_json_schema(output.schema_json, **_JSON_STYLE)
        if output.kind == "regex":
            return xgr.Grammar.from_regex(output.source)
        if output.kind == "structural_tag":
            return xgr.Grammar.from_structural_tag(output.source)
        return xgr.Grammar.from_ebnf(_ebnf(output))
    except (RuntimeError, ValueError) as exc:
        raise _unenforceable(_WHAT[output.kind], exc, output.param) from None


def _ebnf(output: OutputFormat) -> str:
    """The EBNF text of a ``grammar`` or ``choice`` format."""
    return choice_grammar(output.choices) if output.kind == "choice" else output.source


def after_reasoning(answer: xgr.Grammar) -> xgr.Grammar:
    """``answer`` preceded by free reasoning, its closing ``</think>`` and the blank line before the answer."""
    reasoning = TagFormat(begin="", content=AnyTextFormat(), end=THINK_END)  # its first </think> ends it
    separator = ConstStringFormat(value=ANSWER_SEPARATOR)
    prefix = StructuralTag(format=SequenceFormat(elements=[reasoning, separator]))
    return xgr.Grammar.concat(xgr.Grammar.from_structural_tag(prefix), answer)


def _unenforceable(what: str, exc: Exception, param: str) -> ClientError:
    text = str(exc).strip()
    reason = _NATIVE_PREFIX.sub("", text.splitlines()[0] if text else "")
    return ClientError(
        f"{what} cannot be enforced while decoding: {reason or type(exc).__name__}",
        param=param,
        code="unenforceable_schema",
    )


class RowGrammar:
    """One request's grammar matcher: it follows the tokens the row chose and says which may come next."""

    def __init__(self, grammar: xgr.CompiledGrammar) -> None:
        self._matcher: xgr.GrammarMatcher | None = xgr.GrammarMatcher(grammar)

    @property
    def active(self) -> bool:
        """Whether it still constrains the row (not past the end of its answer, nor given up)."""
        return self._matcher is not None and not self._matcher.is_terminated()

    def fill(self, bitmask: torch.Tensor, index: int) -> None:
        assert self._matcher is not None
        self._matcher.fill_next_token_bitmask(bitmask, index)

    def accept(self, token: int) -> None:
        """Follow the row's chosen token. A token off the grammar (only the end-of-answer token forced on a
        row whose constraints contradict each other can be) releases the row: it is ending anyway."""
        if self.active and not self._matcher.accept_token(token):  # type: ignore[union-attr]
            self._matcher = None


def mask_rows(scores: torch.Tensor, grammars: Sequence[RowGrammar | None], vocab_size: int) -> None:
    """Mask, in place, each constrained row's tokens that cannot continue its answer (rows x vocab)."""
    rows = [row for row, grammar in enumerate(grammars) if grammar is not None and grammar.active]
    if not rows:
        return
    bitmask = xgr.allocate_token_bitmask(len(grammars), vocab_size)
    for row in rows:
        grammars[row].fill(bitmask, row)  # type: ignore[union-attr]
    xgr.apply_token_bitmask_inplace(scores, bitmask.to(scores.device), vocab_size=vocab_size, indices=rows)
