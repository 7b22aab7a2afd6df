"""The real server: vLLM's structured_outputs through the openai client, on chat and text completions.

The demo model has random weights: every answer that fits its format comes from the grammar alone.
"""

from __future__ import annotations

import json
import re

import openai
import pytest

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"
COLOR = 'root ::= "color: " ("red" | "green" | "blue") "."'
DIGIT_TAG = {
    "type": "structural_tag",
    "format": {
        "type": "tag",
        "begin": "<n>",
        "content": {"type": "json_schema", "json_schema": {"type": "integer", "minimum": 0, "maximum": 9}},
        "end": "</n>",
    },
}


def chat(client, structured_outputs, **extra):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Answer in the format asked."}], max_tokens=24,
        extra_body={"structured_outputs": structured_outputs}, **extra,
    )  # fmt: skip


def complete(client, structured_outputs, **extra):
    return client.completions.create(
        model=MODEL, prompt="The answer is", max_tokens=24, extra_body={"structured_outputs": structured_outputs},
        **extra,
    )  # fmt: skip


def test_a_regex_constrains_a_chat_answer(openai_client):
    for seed in (1, 2):
        choice = chat(openai_client, {"regex": "[0-9]{3}"}, seed=seed, temperature=1.0).choices[0]
        assert re.fullmatch(r"[0-9]{3}", choice.message.content) and choice.finish_reason == "stop"


def test_a_choice_constrains_a_text_completion(openai_client):
    options = ["yes", "no", "not sure"]
    for seed in (1, 2):
        choice = complete(openai_client, {"choice": options}, seed=seed, temperature=1.0).choices[0]
        assert choice.text in options and choice.finish_reason == "stop"


def test_an_ebnf_grammar_constrains_both_endpoints_streamed_or_not(openai_client):
    whole = chat(openai_client, {"grammar": COLOR}, temperature=0).choices[0].message.content
    assert re.fullmatch(r"color: (red|green|blue)\.", whole)
    chunks = chat(openai_client, {"grammar": COLOR}, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    text = complete(openai_client, {"grammar": COLOR}, temperature=0).choices[0].text
    assert re.fullmatch(r"color: (red|green|blue)\.", text)


def test_a_structural_tag_constrains_the_answer(openai_client):
    for value in (DIGIT_TAG, json.dumps(DIGIT_TAG)):  # an object, or vLLM's form: its JSON text
        text = complete(openai_client, {"structural_tag": value}, temperature=0).choices[0].text
        match = re.fullmatch(r"<n>(.*)</n>", text)
        assert match and json.loads(match.group(1)) in range(10), text


def test_a_text_completion_takes_a_json_response_format(openai_client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    reply = openai_client.completions.create(
        model=MODEL, prompt="Is it?", max_tokens=24, temperature=0,
        extra_body={"response_format": {"type": "json_schema", "json_schema": {"name": "ok", "schema": schema}}},
    )  # fmt: skip
    assert isinstance(json.loads(reply.choices[0].text)["ok"], bool)


@pytest.mark.parametrize(
    ("value", "param", "says"),
    [
        ({"regex": "[0-9"}, "structured_outputs.regex", "not a valid regular expression"),
        ({"grammar": 'root ::= "a" |'}, "structured_outputs.grammar", "EBNF parser error"),
        ({"choice": ["a", ""]}, "structured_outputs.choice[1]", "non-empty string"),
        (
            {"structural_tag": {"type": "structural_tag", "format": {"type": "nope"}}},
            "structured_outputs.structural_tag",
            "Format type not recognized",
        ),  # fmt: skip
        ({"regex": "a", "grammar": 'root ::= "a"'}, "structured_outputs.grammar", "regex and grammar are given"),
        ({"regex": "a", "whitespace_pattern": " "}, "structured_outputs.whitespace_pattern", "not supported"),
    ],
)
def test_a_bad_value_is_a_400_naming_it(openai_client, value, param, says):
    for send in (chat, complete):
        with pytest.raises(openai.BadRequestError) as caught:
            send(openai_client, value)
        assert caught.value.body["param"] == param
        assert says in caught.value.body["message"]


def test_structured_outputs_and_response_format_are_one_or_the_other(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(openai_client, {"regex": "a"}, response_format={"type": "json_object"})
    assert caught.value.body["param"] == "structured_outputs"
    assert "either response_format or structured_outputs" in caught.value.body["message"]
