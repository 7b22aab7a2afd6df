"""An operator's ``--vllm-args``, read the way vLLM 0.32 reads them, before vlserve adds them to its command line.

Options vlserve owns are refused (owned_flags). The JSON options vlserve sets too (``--limit-mm-per-prompt``,
``--mm-processor-kwargs``, ``--media-io-kwargs``) are taken out, in every form vLLM accepts (``--x '{"k": 1}'``,
``--x={...}``, ``--x.k 1``, ``--x.k=1``, ``--x.k+ a,b``, underscores, abbreviations), so that vlserve passes each
once, its own keys merged with the operator's (the operator's win). Everything else is passed on as written, after
vlserve's options.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlserve.engine.vllm.owned_flags import owned_option, refusal
from vlserve.engine.vllm.serve_flags import Option, read_option, resolve

MERGED = (
    "--limit-mm-per-prompt",
    "--mm-processor-kwargs",
    "--media-io-kwargs",
)  # JSON options whose keys vlserve and operator share
_HUMAN_INT = re.compile(r"(\d+(?:\.\d+)?)([kmgt])|(\d+)([KMGT])")  # vLLM's 1k / 1K forms of a dotted value


@dataclass(frozen=True)
class ExtraArgs:
    passed: tuple[str, ...]  # the operator's arguments, as written, less the MERGED options
    merged: Mapping[str, dict[str, Any]]  # a MERGED option -> the keys the operator gives it
    names: frozenset[str]  # each option the operator gives, by the name vLLM takes it for

    def sets(self, *options: str) -> bool:
        """Whether the operator gives any of ``options`` (full names, as ``--enable-auto-tool-choice``)."""
        return any(option in self.names for option in options)

    def merged_with(self, option: str, ours: dict[str, Any]) -> dict[str, Any]:
        """``ours`` for a MERGED option, with the operator's keys merged in (theirs win)."""
        return merge(ours, self.merged.get(option, {}))


def read_extra_args(args: Sequence[str]) -> ExtraArgs:
    """The operator's arguments sorted out; ValueError, in one line, for an owned option or a bad JSON value."""
    passed: list[str] = []
    merged: dict[str, dict[str, Any]] = {}
    names: set[str] = set()
    tokens = iter(args)
    for token in tokens:
        option = read_option(token)
        if option is None:
            passed.append(token)
            continue
        if (owned := owned_option(option)) is not None:
            raise ValueError(refusal(option, owned))
        name = resolve(option.name) or option.name
        names.add(name)
        # vLLM takes the token after a dotted option as its value, whatever it looks like.
        value = option.value if option.value is not None or not (option.keys or name in MERGED) else next(tokens, None)
        if name in MERGED:
            if value is None:
                raise ValueError(f"{option.written} needs a value")
            merged[name] = merge(merged.get(name, {}), _json_keys(option, value))
            continue
        passed.append(token)
        if value is not None and option.value is None:
            passed.append(value)
    return ExtraArgs(tuple(passed), merged, frozenset(names))


def merge(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """``ours`` with ``theirs`` merged in: objects key by key, any other value of theirs replacing ours."""
    result = dict(ours)
    for key, value in theirs.items():
        both_objects = isinstance(value, Mapping) and isinstance(result.get(key), Mapping)
        result[key] = merge(result[key], value) if both_objects else value
    return result


def _json_keys(option: Option, value: str) -> dict[str, Any]:
    """The keys one form of a JSON option gives: the object itself, or one dotted key's value."""
    if not option.keys:
        try:
            keys = json.loads(value)
        except json.JSONDecodeError:
            keys = None
        if not isinstance(keys, dict):
            raise ValueError(f"{option.written} takes a JSON object, as '{{\"image\": 2}}'; got {value[:40]!r}")
        return keys
    item: Any = value.split(",") if option.append else _dotted_value(value)
    for key in reversed(option.keys):
        item = {key: item}
    return item


def _dotted_value(value: str) -> Any:
    """A dotted option's value as vLLM reads it: JSON, else an integer with a k/M/G/T suffix, else the text."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    match = _HUMAN_INT.fullmatch(value.strip())
    if match is None:
        return value
    if match.group(1) is not None:  # decimal: 1.5k = 1500
        return int(float(match.group(1)) * 1000 ** ("kmgt".index(match.group(2)) + 1))
    return int(match.group(3)) * 1024 ** ("KMGT".index(match.group(4)) + 1)  # binary: 1K = 1024
