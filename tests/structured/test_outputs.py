"""vLLM's structured_outputs, checked before a request is admitted: each mistake is a 400 naming it."""

from __future__ import annotations

import json

import pytest

from vlserve.errors import ClientError
from vlserve.structured import OutputFormat, parse_structured_outputs, validate_output
from vlserve.structured.formats import ANY_OBJECT
from vlserve.structured.outputs import MAX_CHOICES, MAX_REGEX_CHARS

TAG = {"type": "structural_tag", "format": {"type": "const_string", "value": "<ok/>"}}


def parse(value):
    return parse_structured_outputs(value, max_depth=32)


def refused(value) -> ClientError:
    with pytest.raises(ClientError) as caught:
        parse(value)
    assert caught.value.status_code == 400
    return caught.value


def test_each_kind_becomes_its_own_format():
    assert parse(None) is None
    regex = parse({"regex": "[0-9]{3}"})
    assert (regex.kind, regex.source, regex.param) == ("regex", "[0-9]{3}", "structured_outputs.regex")
    choice = parse({"choice": ["yes", "no", 'say "hi"\n']})
    assert choice.kind == "choice" and choice.choices == ("yes", "no", 'say "hi"\n')
    grammar = parse({"grammar": 'root ::= "a" | "b"'})
    assert (grammar.kind, grammar.source) == ("grammar", 'root ::= "a" | "b"')
    tag = parse({"structural_tag": TAG})
    assert tag.kind == "structural_tag" and json.loads(tag.source) == TAG
    assert parse({"structural_tag": json.dumps(TAG)}) == tag  # vLLM's form: the tag's JSON text


def test_json_kinds_are_json_schema_formats():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    by_object = parse({"json": schema, "disable_any_whitespace": True, "disable_additional_properties": False})
    assert by_object.kind == "json" and by_object.schema == schema and by_object.param == "structured_outputs.json"
    assert parse({"json": json.dumps(schema)}) == by_object
    any_object = parse({"json_object": True})
    assert any_object.kind == "json" and any_object.schema == ANY_OBJECT
    assert validate_output('{"a": 1}', any_object) is None and validate_output("[1]", any_object) is not None


def test_kinds_differ_even_with_the_same_text():
    assert parse({"regex": "yes"}) != parse({"grammar": 'root ::= "yes"'}) != parse({"choice": ["yes"]})
    assert parse({"regex": "a"}) != OutputFormat.of("structured_outputs", {"type": "object"})


def test_legacy_structural_tags_are_converted_to_the_current_form():
    legacy = {"structures": [{"begin": "<n>", "schema": {"type": "integer"}, "end": "</n>"}], "triggers": ["<n>"]}
    tag = parse({"structural_tag": legacy})
    assert json.loads(tag.source)["type"] == "structural_tag"
    error = refused({"structural_tag": {"structures": [{"begin": "<n>"}], "triggers": ["<n>"]}})
    assert error.param == "structured_outputs.structural_tag" and "legacy form" in str(error)


@pytest.mark.parametrize(
    ("value", "param", "says"),
    [
        ({}, "structured_outputs", "none is given"),
        ({"disable_any_whitespace": True}, "structured_outputs", "none is given"),
        ({"regex": "a", "choice": ["a"]}, "structured_outputs.choice", "regex and choice are given"),
        ({"regex": "a", "pattern": "b"}, "structured_outputs.pattern", "unknown field(s) 'pattern'"),
        ({"regex": "a", "whitespace_pattern": " *"}, "structured_outputs.whitespace_pattern", "not supported"),
        ({"regex": "a", "disable_any_whitespace": "yes"}, "structured_outputs.disable_any_whitespace", "true or false"),
        ({"regex": "(a"}, "structured_outputs.regex", "parenthesis is not closed"),
        ({"regex": "(?<=a)b"}, "structured_outputs.regex", "Lookbehind is not supported"),
        ({"regex": ""}, "structured_outputs.regex", "non-empty string"),
        ({"regex": ["a"]}, "structured_outputs.regex", "non-empty string"),
        ({"regex": "a" * (MAX_REGEX_CHARS + 1)}, "structured_outputs.regex", f"more than {MAX_REGEX_CHARS}"),
        ({"regex": ".{0,1000}"}, "structured_outputs.regex", "add up to 1000"),
        ({"grammar": 'root ::= "a" |'}, "structured_outputs.grammar", "EBNF parser error at line 1"),
        ({"grammar": 'start ::= "a"'}, "structured_outputs.grammar", 'root rule with name "root" is not found'),
        ({"grammar": 'root ::= [a-z]{0,900} "."'}, "structured_outputs.grammar", "add up to 900"),
        ({"choice": []}, "structured_outputs.choice", "non-empty list"),
        ({"choice": "yes"}, "structured_outputs.choice", "non-empty list"),
        ({"choice": ["yes", ""]}, "structured_outputs.choice[1]", "non-empty string"),
        ({"choice": ["yes", 3]}, "structured_outputs.choice[1]", "non-empty string"),
        ({"choice": ["x"] * (MAX_CHOICES + 1)}, "structured_outputs.choice", f"more than {MAX_CHOICES}"),
        ({"structural_tag": "{nope"}, "structured_outputs.structural_tag", "not valid JSON"),
        ({"structural_tag": ["a"]}, "structured_outputs.structural_tag", "JSON object"),
        (
            {"structural_tag": {"type": "structural_tag", "format": {"type": "nope"}}},
            "structured_outputs.structural_tag",
            "Format type not recognized: nope",
        ),  # fmt: skip
        ({"json": {"type": "nonsense"}}, "structured_outputs.json", "not a valid JSON Schema"),
        ({"json": "{bad"}, "structured_outputs.json", "not valid JSON"),
        ({"json": {"$ref": "https://example.com/s.json"}}, "structured_outputs.json", "never fetched"),
        ({"json_object": False}, "structured_outputs.json_object", "must be true"),
    ],
)
def test_each_mistake_is_a_400_naming_it(value, param, says):
    error = refused(value)
    assert error.param == param
    assert says in str(error)
    assert "\n" not in str(error) and "/project/" not in str(error)  # xgrammar's message, on one line, no path


def test_a_value_nested_too_deep_is_refused_before_anything_walks_it():
    deep: dict = {"type": "object"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    assert refused({"json": deep}).code == "json_too_deep"
