"""Parse a page selection such as ``"1-5, 8, 10-"`` (1-based, inclusive) into sorted 0-based indices."""

from __future__ import annotations

import re

from vlserve.errors import ClientError

__all__ = ["parse_page_range"]

_PARAM = "pages"
_NUMBER = r"\s*([0-9]+)\s*"
_PIECE = re.compile(rf"{_NUMBER}|(?:{_NUMBER})?-(?:{_NUMBER})?")


def parse_page_range(spec: str | None, total: int) -> list[int]:
    """Sorted unique 0-based page indices for ``spec``; ``None`` or blank selects all ``total`` pages.

    Items are separated by commas: ``N``, ``A-B``, ``A-`` (to the last page) or ``-B`` (from the first).
    """
    if spec is None or not spec.strip():
        return list(range(total))
    selected: set[int] = set()
    for piece in spec.split(","):
        first, last = _bounds(piece.strip(), total)
        selected.update(range(first - 1, last))
    return sorted(selected)


def _bounds(piece: str, total: int) -> tuple[int, int]:
    """The 1-based inclusive ``(first, last)`` pages one item names, each checked against ``total``."""
    if not piece:
        raise ClientError("page list has an empty item (two commas in a row, or a comma at an end)", param=_PARAM)
    match = _PIECE.fullmatch(piece)
    if match is None or (match[1] is None and match[2] is None and match[3] is None):
        raise ClientError(f"'{piece}' is not a page number or range", param=_PARAM)
    if match[1] is not None:
        first = last = int(match[1])
    else:
        first = int(match[2]) if match[2] is not None else 1
        last = int(match[3]) if match[3] is not None else total
    for page in (first, last):
        _check_page(page, total)
    if first > last:
        raise ClientError(f"'{piece}' is not a valid range (start after end)", param=_PARAM)
    return first, last


def _check_page(page: int, total: int) -> None:
    if page < 1:
        raise ClientError(f"page {page} does not exist: pages are numbered from 1", param=_PARAM)
    if page > total:
        noun = "page" if total == 1 else "pages"
        raise ClientError(
            f"page {page} is out of range: the document has {total} {noun}", param=_PARAM, code="page_out_of_range"
        )
