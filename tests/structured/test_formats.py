"""response_format parsing (clean 400s naming the problem) and the check of finished answers."""

from __future__ import annotations

import pytest

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
