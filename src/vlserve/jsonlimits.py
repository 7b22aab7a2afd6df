"""The one depth rule for every JSON the server parses: nested at most ``max_json_depth`` levels.

Request bodies, form fields, schemas, the model's answers and an upstream's replies all pass through
here. A value counts one level per list or object it sits in: ``[]`` and ``{}`` are 1 deep, ``[[1]]`` 2.
Text is checked before it is parsed (:func:`text_deeper_than`, a linear scan that counts brackets
outside strings), because Python's parser itself fails with RecursionError on input about 1,000
levels deep; values already parsed are checked with :func:`deeper_than`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from vlserve.errors import ClientError

__all__ = ["DEEPEST", "DEFAULT_MAX_DEPTH", "JSONTooDeepError", "deeper_than", "loads", "text_deeper_than", "too_deep"]

DEFAULT_MAX_DEPTH = 32  # VLSERVE_MAX_JSON_DEPTH's default
DEEPEST = 64  # the largest VLSERVE_MAX_JSON_DEPTH the settings accept (jsonschema recurses once per level)

_CHUNK = 1 << 20  # bytes scanned at a time (the scan's arrays stay a few MiB)
_STEP = np.zeros(256, np.int32)  # +1 for an opening bracket, -1 for a closing one, 0 for any other byte
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1
_STEP.flags.writeable = False


class JSONTooDeepError(ValueError):
    """JSON text nested deeper than the limit (a ValueError, like the parser's own JSONDecodeError)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the JSON nests more than {limit} levels deep")
        self.limit = limit


def text_deeper_than(text: str | bytes, limit: int) -> bool:
    """Whether the JSON ``text`` opens more than ``limit`` lists and objects inside one another.

    Linear in the length of ``text``, vectorised with numpy (a few milliseconds per MiB, well under
    what parsing costs), and valid JSON or not: a bracket left open counts, so a parser given text
    that passes never nests deeper than ``limit``. Brackets inside strings do not count."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") <= limit:  # most texts: too few brackets to be too deep
        return False
    depth, quoted, backslashes = 0, 0, 0  # carried from one chunk to the next
    for start in range(0, len(data), _CHUNK):
        chunk = np.frombuffer(data, np.uint8, count=min(_CHUNK, len(data) - start), offset=start)
        quote = chunk == ord('"')
        backslash = chunk == ord("\\")
        if backslashes or backslash.any():  # a quote after an odd run of backslashes is escaped
            last = np.maximum.accumulate(np.where(backslash, -1 - backslashes, np.arange(len(chunk))))
            quotes = np.flatnonzero(quote)
            before = np.where(quotes > 0, last[quotes - 1], -1 - backslashes)  # the last byte before the run
            quote[quotes[(quotes - before) % 2 == 0]] = False
            backslashes = len(chunk) - 1 - int(last[-1])
        inside = (np.cumsum(quote, dtype=np.int32) + quoted) & 1  # 1 within a string (and at its quotes)
        running = np.cumsum(np.take(_STEP, chunk) * (1 - inside)) + depth
        if running.max() > limit:
            return True
        depth, quoted = int(running[-1]), int(inside[-1])
    return False


def deeper_than(value: Any, limit: int) -> bool:
    """Whether a parsed ``value`` nests lists and objects more than ``limit`` levels deep (iterative, stops early)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | tuple))
    return False


def loads(text: str | bytes, limit: int) -> Any:
    """``json.loads`` for text checked first: :class:`JSONTooDeepError` when it nests more than ``limit``
    levels, ``json.JSONDecodeError`` when it is not JSON (both ValueErrors)."""
    if text_deeper_than(text, limit):
        raise JSONTooDeepError(limit)
    return json.loads(text)


def too_deep(param: str | None, limit: int, what: str | None = None) -> ClientError:
    """The client's error for JSON nested too deep: 400 ``json_too_deep`` naming the field and the setting."""
    subject = what or (f"'{param}'" if param else "the request body")
    return ClientError(
        f"{subject} nests more than {limit} levels deep (VLSERVE_MAX_JSON_DEPTH)", param=param, code="json_too_deep"
    )
