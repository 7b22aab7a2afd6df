"""structured_outputs enforced while decoding: whatever the model prefers, a row spells only what its format allows."""

from __future__ import annotations

import json
import re

import pytest

from tests.engine.test_grammar import decode_random
from vlserve.engine.base import EngineRequest, SamplingParams
from vlserve.engine.transformers.checkpoint import load_checkpoint
from vlserve.engine.transformers.grammar import GrammarCache
from vlserve.errors import ClientError
from vlserve.structured import OutputFormat, parse_structured_outputs

THREE_DIGITS = parse_structured_outputs({"regex": "[0-9]{3}"}, max_depth=32)
YES_NO = parse_structured_outputs({"choice": ["yes", "no", 'a "quoted"\nline']}, max_depth=32)
COLOR = parse_structured_outputs({"grammar": 'root ::= "color: " ("red" | "green" | "blue") "."'}, max_depth=32)
TAGGED = parse_structured_outputs(
    {
        "structural_tag": {
            "type": "structural_tag",
            "format": {
                "type": "tag",
                "begin": "<n>",
                "content": {"type": "json_schema", "json_schema": {"type": "integer", "minimum": 0, "maximum": 9}},
                "end": "</n>",
            },
        }
    },
    max_depth=32,
)


@pytest.fixture(scope="module")
def checkpoint(demo_model):
    return load_checkpoint(demo_model)


@pytest.fixture(scope="module")
def grammars(checkpoint):
    return GrammarCache(
        checkpoint.tokenizer, checkpoint.model.config.get_text_config().vocab_size, checkpoint.eos_token_ids
    )


def test_each_kind_constrains_random_weights_to_its_language(grammars, checkpoint):
    for seed in range(3):
        texts, ended, _ = decode_random(grammars, checkpoint, [THREE_DIGITS, YES_NO, COLOR, TAGGED, None], seed=seed)
        assert all(ended[:4]), texts
        assert re.fullmatch(r"[0-9]{3}", texts[0]), texts[0]
        assert texts[1] in YES_NO.choices, texts[1]
        assert re.fullmatch(r"color: (red|green|blue)\.", texts[2]), texts[2]
        match = re.fullmatch(r"<n>(.*)</n>", texts[3])
        assert match and json.loads(match.group(1)) in range(10), texts[3]


def test_a_choice_with_quotes_and_newlines_is_spelled_exactly(grammars, checkpoint):
    only = OutputFormat.constraint("choice", json.dumps(['a "quoted"\nline\\ ü']))
    texts, ended, _ = decode_random(grammars, checkpoint, [only], seed=1)
    assert ended[0] and texts[0] == 'a "quoted"\nline\\ ü'


def test_each_kind_also_follows_a_reasoning_block(grammars):
    request = EngineRequest((), prompt="think first")
    for output in (THREE_DIGITS, YES_NO, COLOR, TAGGED):
        assert grammars.for_request(request, SamplingParams(output=output), reasoning=True) is not None


def test_a_format_xgrammar_refuses_at_compile_time_names_its_field(grammars):
    with pytest.raises(ClientError) as caught:
        grammars.compile(OutputFormat.constraint("grammar", "root ::= undefined_rule"))
    assert caught.value.param == "structured_outputs.grammar"
    assert "the grammar cannot be enforced while decoding" in caught.value.message
    assert "/project/" not in caught.value.message
