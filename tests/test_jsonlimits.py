"""The one depth rule: the scan of JSON text agrees with the depth of the parsed value, at any chunk size."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlserve import jsonlimits
from vlserve.jsonlimits import JSONTooDeepError, deeper_than, loads, text_deeper_than

# Strings full of what could fool a scan: brackets, quotes and runs of backslashes.
TRICKY = st.text(alphabet='[]{}"\\ aé', max_size=8)
VALUES = st.recursive(
    st.none() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=40,
)


def depth(value) -> int:
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max(map(depth, children), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(VALUES, st.sampled_from([1, 2, 3, 1 << 20]), st.booleans())
def test_the_scan_of_the_text_finds_the_depth_of_the_value(value, chunk, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    original = jsonlimits._CHUNK
    jsonlimits._CHUNK = chunk  # chunk edges inside strings, escapes and bracket runs
    try:
        for limit in range(depth(value) + 2):
            assert text_deeper_than(text, limit) == (depth(value) > limit) == deeper_than(value, limit), (text, limit)
    finally:
        jsonlimits._CHUNK = original


@pytest.mark.parametrize("text", ["[" * 100_000, "[" * 1000 + "]" * 1000, '{"a": ' * 5000, '["x", ' * 2000])
def test_text_too_deep_for_the_parser_is_refused_before_it_is_parsed(text):
    with pytest.raises(JSONTooDeepError) as caught:  # not RecursionError, whether or not the text is valid JSON
        loads(text, 32)
    assert isinstance(caught.value, ValueError)


def test_brackets_inside_strings_do_not_count():
    assert loads(json.dumps({"a": "[" * 1000, "b": '\\"{' * 500}), 2) == {"a": "[" * 1000, "b": '\\"{' * 500}
