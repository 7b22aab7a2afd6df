"""vLLM's ``structured_outputs`` (its StructuredOutputsParams) checked up front, as an :class:`OutputFormat`.

Exactly one constraint per request: ``json`` (a JSON Schema, as an object or its JSON text: the checks of
``response_format``'s schema), ``json_object: true`` (any JSON object), ``regex``, ``choice`` (the answer is
one of a list of strings), ``grammar`` (an EBNF grammar in xgrammar's GBNF dialect, its root rule ``root``)
or ``structural_tag`` (an xgrammar structural tag, as an object or its JSON text; vLLM's legacy
``{"structures", "triggers"}`` form is converted to the current one). The options: ``disable_any_whitespace``
and ``disable_additional_properties`` are what vlserve's grammars always do (no free whitespace in JSON, and
no property a schema does not declare: xgrammar's strict mode, as in vLLM with xgrammar), so either value
is accepted; ``whitespace_pattern`` is refused (xgrammar has no such option).

A regex, a grammar and a structural tag are parsed by xgrammar here, so a mistake is a 400 quoting its
message before the request is admitted. xgrammar turns a regex into a grammar and then into a token-level
automaton: matching never backtracks, so a pattern such as ``(a+)+b`` costs nothing while decoding. What
costs is compiling it against the model's vocabulary, once per distinct format (then cached): every counted
repetition (``{m,n}``) of a broad class is unrolled into states that each test every token (``.{0,128}``
takes about 7 s on Qwen's 151,669 tokens, ``.{0,1000}`` about 12 s; ``.*`` 20 ms). So a regex or grammar
may count at most :data:`MAX_REPEATS` repetitions in all, besides the limits on its length. Parsing imports
xgrammar (and torch) on first use: call this in a thread from async code.
"""

from __future__ import annotations

import json
import re
from typing import Any

from vlserve.errors import ClientError
from vlserve.jsonlimits import JSONTooDeepError, deeper_than, loads, too_deep
from vlserve.structured.formats import (
    ANY_OBJECT,
    MAX_SCHEMA_CHARS,
    STRUCTURED_OUTPUTS,
    Kind,
    OutputFormat,
    check_schema,
    json_chars,
    schema_too_large,
)

__all__ = ["MAX_REPEATS", "choice_grammar", "parse_structured_outputs"]

CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
OPTIONS = ("disable_any_whitespace", "disable_additional_properties", "whitespace_pattern")
MAX_REGEX_CHARS = 4096
MAX_GRAMMAR_CHARS = 32 * 1024
MAX_CHOICES = 1024
MAX_CHOICE_CHARS = 1024
MAX_REPEATS = 256  # counted repetitions ({m,n}) in a regex or grammar, in all: see the module's docstring
# In xgrammar's printed grammar: a string or a character class (skipped), or a counted repetition "{m, n}".
_PRINTED = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{(\d+), (-?\d+)\}')
_NATIVE_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")  # "[06:50:01] /path/file.cc:4944: "


def _param(name: str) -> str:
    return f"{STRUCTURED_OUTPUTS}.{name}"


def parse_structured_outputs(value: dict[str, Any] | None, *, max_depth: int) -> OutputFormat | None:
    """The format ``structured_outputs`` asks for (None when it is null); ClientError naming what is wrong.
    CPU work as long as the value: call it in a thread from async code."""
    if value is None:
        return None
    if deeper_than(value, max_depth + 1):  # the schema inside may nest max_depth levels
        raise too_deep(STRUCTURED_OUTPUTS, max_depth)
    unknown = sorted(set(value) - set(CONSTRAINTS) - set(OPTIONS))
    if unknown:
        raise ClientError(
            f"{STRUCTURED_OUTPUTS} has unknown field(s) {', '.join(map(repr, unknown))}; it takes one of "
            f"{', '.join(CONSTRAINTS)}, and the options {', '.join(OPTIONS)}",
            param=_param(unknown[0]),
        )
    _check_options(value)
    given = [name for name in CONSTRAINTS if value.get(name) is not None]
    if len(given) != 1:
        what = f"{' and '.join(given)} are given" if given else "none is given"
        raise ClientError(
            f"{STRUCTURED_OUTPUTS} needs exactly one constraint of {', '.join(CONSTRAINTS)}; {what}",
            param=_param(given[1]) if given else STRUCTURED_OUTPUTS,
        )
    kind = given[0]
    spec = value[kind]
    if kind == "json":
        return _json(spec, max_depth)
    if kind == "json_object":
        if spec is not True:
            raise ClientError(f"{_param(kind)} must be true, got {spec!r}", param=_param(kind))
        return OutputFormat.of("json_object", ANY_OBJECT, max_depth)
    if kind == "regex":
        return _constraint("regex", _text(spec, kind, MAX_REGEX_CHARS), max_depth)
    if kind == "grammar":
        return _constraint("grammar", _text(spec, kind, MAX_GRAMMAR_CHARS), max_depth)
    if kind == "choice":
        return _choice(spec, max_depth)
    return _structural_tag(spec, max_depth)


def _check_options(value: dict[str, Any]) -> None:
    for name in ("disable_any_whitespace", "disable_additional_properties"):
        if not isinstance(value.get(name, False), bool):
            raise ClientError(f"{_param(name)} must be true or false, got {value[name]!r}", param=_param(name))
    if value.get("whitespace_pattern") is not None:
        raise ClientError(
            f"{_param('whitespace_pattern')} is not supported: JSON answers have no free whitespace "
            "(as with disable_any_whitespace); leave it out",
            param=_param("whitespace_pattern"),
            code="unsupported_parameter",
        )


def _json(spec: Any, max_depth: int) -> OutputFormat:
    param = _param("json")
    if isinstance(spec, str):
        if len(spec) > MAX_SCHEMA_CHARS:
            raise schema_too_large(param)
        try:
            spec = loads(spec, max_depth)
        except JSONTooDeepError:
            raise too_deep(param, max_depth) from None
        except json.JSONDecodeError as exc:
            raise ClientError(f"{param} is not valid JSON: {exc.msg} at character {exc.pos}", param=param) from None
    check_schema(spec, param, max_depth=max_depth)
    return OutputFormat.of(STRUCTURED_OUTPUTS, spec, max_depth)


def _text(spec: Any, kind: str, limit: int) -> str:
    param = _param(kind)
    if not isinstance(spec, str) or not spec:
        raise ClientError(f"{param} must be a non-empty string, got {_shown(spec)}", param=param)
    if len(spec) > limit:
        raise ClientError(f"{param} has {len(spec)} characters, more than {limit}", param=param, code="too_long")
    return spec


def _constraint(kind: Kind, source: str, max_depth: int) -> OutputFormat:
    grammar = _parsed(kind, source)
    if kind in ("regex", "grammar"):
        _check_repeats(str(grammar), kind)
    return OutputFormat.constraint(kind, source, max_depth)


def _parsed(kind: Kind, source: str) -> Any:
    """xgrammar's Grammar of ``source``; ClientError quoting xgrammar's message (its first line) when it fails."""
    import xgrammar as xgr  # imports torch: only once a request asks for one of these formats

    build = {
        "regex": xgr.Grammar.from_regex,
        "grammar": xgr.Grammar.from_ebnf,
        "choice": xgr.Grammar.from_ebnf,
        "structural_tag": xgr.Grammar.from_structural_tag,
    }[kind]
    try:
        return build(source)
    except (RuntimeError, ValueError, TypeError) as exc:  # xgrammar's InvalidJSON/StructuralTagError are RuntimeErrors
        text = str(exc).strip()
        reason = _NATIVE_PREFIX.sub("", text.splitlines()[0] if text else "") or type(exc).__name__
        what = {"regex": "regular expression", "grammar": "EBNF grammar", "structural_tag": "structural tag"}
        raise ClientError(
            f"{_param(kind)} is not a valid {what.get(kind, kind)}: {reason}",
            param=_param(kind),
            code="invalid_grammar",
        ) from None


def _check_repeats(printed: str, kind: str) -> None:
    total = 0
    for match in _PRINTED.finditer(printed):
        if match.group(1) is not None:
            low, high = int(match.group(1)), int(match.group(2))
            total += max(low, high)
    if total > MAX_REPEATS:
        raise ClientError(
            f"{_param(kind)}'s counted repetitions ({{m,n}}) add up to {total}, more than {MAX_REPEATS}: each "
            "repetition is compiled against every token of the vocabulary; use * or + for long runs",
            param=_param(kind),
            code="too_complex",
        )


def choice_grammar(choices: tuple[str, ...] | list[str]) -> str:
    """The EBNF grammar whose answers are exactly ``choices`` (each a string literal, JSON-escaped)."""
    return "root ::= " + " | ".join(json.dumps(choice, ensure_ascii=False) for choice in choices)


def _choice(spec: Any, max_depth: int) -> OutputFormat:
    param = _param("choice")
    if not isinstance(spec, list) or not spec:
        raise ClientError(f"{param} must be a non-empty list of strings, got {_shown(spec)}", param=param)
    if len(spec) > MAX_CHOICES:
        raise ClientError(f"{param} has {len(spec)} choices, more than {MAX_CHOICES}", param=param, code="too_long")
    for i, choice in enumerate(spec):
        if not isinstance(choice, str) or not choice:
            raise ClientError(f"{param}[{i}] must be a non-empty string, got {_shown(choice)}", param=f"{param}[{i}]")
        if len(choice) > MAX_CHOICE_CHARS:
            raise ClientError(
                f"{param}[{i}] has {len(choice)} characters, more than {MAX_CHOICE_CHARS}",
                param=f"{param}[{i}]",
                code="too_long",
            )
    _parsed("choice", choice_grammar(spec))  # a lone surrogate would fail here, not in the engine
    return OutputFormat.constraint("choice", json.dumps(spec, ensure_ascii=False), max_depth)


def _structural_tag(spec: Any, max_depth: int) -> OutputFormat:
    param = _param("structural_tag")
    if isinstance(spec, str):
        if len(spec) > MAX_SCHEMA_CHARS:
            raise schema_too_large(param)
        try:
            spec = loads(spec, max_depth)
        except JSONTooDeepError:
            raise too_deep(param, max_depth) from None
        except json.JSONDecodeError as exc:
            raise ClientError(f"{param} is not valid JSON: {exc.msg} at character {exc.pos}", param=param) from None
    if not isinstance(spec, dict):
        raise ClientError(f"{param} must be a JSON object (or its JSON text), got {_shown(spec)}", param=param)
    if json_chars(spec, MAX_SCHEMA_CHARS) > MAX_SCHEMA_CHARS:
        raise schema_too_large(param)
    if "structures" in spec:
        spec = _current_form(spec, param)
    source = json.dumps(spec, sort_keys=True, ensure_ascii=False)
    _parsed("structural_tag", source)
    return OutputFormat.constraint("structural_tag", source, max_depth)


def _current_form(legacy: dict[str, Any], param: str) -> dict[str, Any]:
    """vLLM's legacy ``{"structures": [{"begin", "schema", "end"}], "triggers"}`` in xgrammar's current form."""
    import xgrammar as xgr

    try:
        tags = [
            xgr.StructuralTagItem(begin=s["begin"], schema=json.dumps(s.get("schema") or {}), end=s["end"])
            for s in legacy["structures"]
        ]
        return json.loads(
            xgr.StructuralTag.from_legacy_structural_tag(tags, list(legacy["triggers"])).model_dump_json()
        )
    except (KeyError, TypeError, ValueError, AttributeError):  # pydantic's ValidationError is a ValueError
        raise ClientError(
            f"{param} in the legacy form needs 'structures' (a list of objects with 'begin', 'schema' and 'end') "
            "and 'triggers' (a list of strings)",
            param=param,
            code="invalid_grammar",
        ) from None


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
