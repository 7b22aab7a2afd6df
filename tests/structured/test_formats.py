"""response_format parsing (clean 400s naming the problem) and the check of finished answers."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from tests.support.http_server import serve_http
from vlserve.errors import ClientError
from vlserve.structured import OutputFormat, parse_response_format, validate_output

SCHEMA = {
    "type": "object",
    "properties": {"2021": {"type": "integer"}, "2022": {"type": "integer", "minimum": 0}},
    "required": ["2021", "2022"],
}


def as_schema(schema, name="chart_values"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def test_text_and_absent_mean_no_constraint():
    assert parse_response_format(None) is None
    assert parse_response_format({"type": "text"}) is None


def test_json_object_means_any_object():
    output = parse_response_format({"type": "json_object"})
    assert output.schema == {"type": "object"}
    assert validate_output('{"a": [1, 2]}', output) is None
    assert "does not match" in validate_output("[1, 2]", output)


def test_equal_schemas_give_equal_formats_whatever_the_key_order():
    reordered = {"required": SCHEMA["required"], "properties": SCHEMA["properties"], "type": "object"}
    assert parse_response_format(as_schema(SCHEMA)) == parse_response_format(as_schema(reordered))


@pytest.mark.parametrize(
    ("value", "param", "says"),
    [
        ({"type": "yaml"}, "response_format.type", "'yaml'"),
        ({"type": "json_schema"}, "response_format.json_schema", "name' and 'schema'"),
        (as_schema(SCHEMA, name="has spaces"), "response_format.json_schema.name", "'has spaces'"),
        (as_schema({"type": "objekt"}), "response_format.json_schema.schema", "'objekt'"),
        (
            as_schema({"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}}),
            "response_format.json_schema.schema",
            "properties.n.minimum",
        ),
        (as_schema(["not", "an", "object"]), "response_format.json_schema.schema", "got list"),
    ],
)
def test_bad_formats_are_client_errors_naming_the_problem(value, param, says):
    with pytest.raises(ClientError) as caught:
        parse_response_format(value)
    assert caught.value.param == param
    assert says in caught.value.message


def test_validation_names_what_is_wrong_and_where():
    output = OutputFormat.of("chart_values", SCHEMA)
    assert validate_output('{"2021": 12, "2022": 7}', output) is None
    assert "not valid JSON" in validate_output('{"2021": 12, "2022": ', output)
    missing = validate_output('{"2021": 12}', output)
    assert "'2022' is a required property" in missing
    negative = validate_output('{"2021": 12, "2022": -3}', output)
    assert "minimum" in negative and "at 2022" in negative


# --- references resolve only inside the schema; depth first -------------------------------------------


class Leaf(BaseModel):
    name: str


class Node(BaseModel):  # pydantic's recursive schema: $defs, a root $ref, a $ref under items
    leaf: Leaf
    children: list[Node] = []


@pytest.mark.parametrize(
    "schema",
    [
        Node.model_json_schema(),
        {"definitions": {"A": {"type": "string"}}, "properties": {"a": {"$ref": "#/definitions/A"}}},
        {"$defs": {"A": {"$anchor": "leaf", "type": "string"}}, "properties": {"a": {"$ref": "#leaf"}}},
        {"$id": "https://example.com/s", "$defs": {"A": {"$id": "urn:vlserve:a", "type": "string"}},
         "properties": {"a": {"$ref": "urn:vlserve:a"}, "b": {"$ref": "https://example.com/s#/$defs/A"}}},
        {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"A": {"type": "string"}},
         "properties": {"a": {"$ref": "#/definitions/A"}}},
    ],
)  # fmt: skip
def test_references_inside_the_schema_resolve(schema):
    output = parse_response_format(as_schema(schema))
    assert validate_output('{"leaf": {"name": "x"}, "children": [{"leaf": {"name": "y"}}], "a": "s"}', output) is None


@pytest.mark.parametrize(
    "ref",
    [
        "{url}/json-secret",
        "{url}/schema.json#/$defs/A",
        "https://127.0.0.1:9/schema.json",
        "file://{path}",
        "urn:vlserve:elsewhere",
        "other.json",
        "../schemas/other.json#/A",
    ],
)
def test_a_reference_outside_the_schema_is_refused_naming_it_and_nothing_is_fetched(ref, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"type": "string", "description": "s3cret-value"}')
    with serve_http() as listener:
        ref = ref.format(url=listener.url, path=secret)
        schema = {"type": "object", "properties": {"a": {"$ref": ref}}, "required": ["a"]}
        for keyword in ("$ref", "$dynamicRef"):
            with pytest.raises(ClientError) as caught:
                parse_response_format(as_schema(json.loads(json.dumps(schema).replace('"$ref"', f'"{keyword}"'))))
            assert caught.value.code == "unresolvable_ref"
            assert caught.value.param == "response_format.json_schema.schema"
            assert repr(ref) in caught.value.message and "s3cret" not in caught.value.message
        relative = {"$id": f"{listener.url}/base/", "properties": {"a": {"$ref": "secret.json"}}}
        with pytest.raises(ClientError, match="'secret.json' points outside the schema"):
            parse_response_format(as_schema(relative))
        # An answer checked against a schema nobody checked (a job stored before this check) fetches nothing either.
        unchecked = validate_output('{"a": "x"}', OutputFormat.of("stored", schema))
        assert "does not resolve inside it" in unchecked
        assert listener.paths() == []


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"$ref": "#"}, "'#' refers back"),
        ({"properties": {"a": {"allOf": [{"$ref": "#/properties/a"}]}}}, "'#/properties/a' refers back"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/a"}]}},
          "properties": {"x": {"$ref": "#/$defs/a"}}}, "refers back"),
        ({"$ref": "#/$defs/missing"}, "points at nothing"),
        ({"allOf": [{"type": "string"}], "$ref": "#/allOf/first"}, "points at nothing"),
        ({"properties": {"a": {"$ref": "#/required"}}, "required": ["a"]}, "not a schema"),
    ],
)  # fmt: skip
def test_a_reference_that_loops_in_place_or_points_at_no_schema_is_refused(schema, says):
    with pytest.raises(ClientError) as caught:  # validating against one would recurse without end, or crash
        parse_response_format(as_schema(schema))
    assert caught.value.param == "response_format.json_schema.schema"
    assert says in caught.value.message


def nested_properties(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def test_a_schema_deeper_than_the_limit_is_refused_before_jsonschema_recurses_into_it():
    with pytest.raises(ClientError) as caught:  # 100 levels of properties: 201 levels of JSON
        parse_response_format(as_schema(nested_properties(100)))
    assert caught.value.code == "json_too_deep" and "VLSERVE_MAX_JSON_DEPTH" in caught.value.message
    assert parse_response_format(as_schema(nested_properties(15)), max_depth=32) is not None  # 31 levels


def test_an_answer_nested_too_deep_is_an_error_about_the_answer_not_a_crash():
    output = parse_response_format({"type": "json_object"})
    problem = validate_output('{"a": ' + "[" * 5000 + "]" * 5000 + "}", output)
    assert problem == "the answer nests more than 32 levels deep (VLSERVE_MAX_JSON_DEPTH)"
