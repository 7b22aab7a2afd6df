"""Tool calls in Qwen's format: the streamed answer splits into content and OpenAI tool-call pieces, and the
grammar lets a model write only calls of the given tools, with arguments under each tool's schema."""

from __future__ import annotations

import json
import random

import pytest
import xgrammar as xgr
from transformers import AutoTokenizer
from xgrammar.testing import bitmask_to_bool_mask

from vlserve.engine.base import ChatTurn, EngineRequest
from vlserve.engine.transformers.tool_calls import ToolCallParser, structural_tag
from vlserve.service.generation import assemble_tool_calls

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"enum": ["Paris", "Oslo"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "clock"}}
ANSWER = (
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": {"n": 2}}}'
    "\n</tool_call>"
    '\n<tool_call>\n{"name": "clock", "arguments": {}}\n</tool_call>'
)


def parse(text: str, step: int, reason: str = "stop"):
    parser = ToolCallParser()
    content, pieces = "", []
    for i in range(0, len(text), step):
        c, calls = parser.push(text[i : i + step])
        content, pieces = content + c, pieces + list(calls)
    c, calls, finish = parser.finish(reason)  # type: ignore[arg-type]
    return content + c, pieces + list(calls), finish


@pytest.mark.parametrize("step", [1, 2, 5, 13, len(ANSWER)])
def test_calls_are_read_however_the_text_is_split(step):
    content, pieces, finish = parse(ANSWER, step)
    calls = assemble_tool_calls(pieces)
    assert content == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris", "days": {"n": 2}}),
        ("clock", {}),
    ]
    assert finish == "tool_calls"
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    firsts = [p for p in pieces if p.id is not None]  # each call's first piece names it, once
    assert [(p.index, p.name) for p in firsts] == [(0, "get_weather"), (1, "clock")]


def test_text_without_calls_is_all_content_and_a_lookalike_is_not_held_forever():
    content, pieces, finish = parse("Use <tool> or <tool_call> tags, like <tool_call>oops</tool_call> here.", 3)
    assert content == "Use <tool> or <tool_call> tags, like <tool_call>oops</tool_call> here."
    assert pieces == [] and finish == "stop"


def test_a_call_cut_off_by_the_token_limit_keeps_what_was_written_and_says_length():
    content, pieces, finish = parse(ANSWER[: ANSWER.index("Paris") + 2], 4, reason="length")
    (call,) = assemble_tool_calls(pieces)
    assert call.name == "get_weather" and call.arguments == '{"city":"Pa'
    assert finish == "length"
    _, pieces, _ = parse('<tool_call>\n{"name": "clock", "arguments": {"a": 1}}\n</tool', 3, reason="length")
    assert assemble_tool_calls(pieces)[0].arguments == '{"a":1}'  # the closing tag is not an argument


@pytest.mark.parametrize("answer", [ANSWER, ANSWER[ANSWER.index("<tool_call>") :]])
def test_a_cut_inside_a_calls_opening_leaks_no_markup(answer):
    """Wherever the token limit falls before a call's arguments begin, no markup becomes content: the call is
    left out until its name is whole, then it is the partial call OpenAI sends (id, name, no arguments yet)."""
    first = answer.index("<tool_call>")
    name_ends = answer.index('get_weather"') + len("get_weather")
    arguments = answer.index("{", answer.index('"arguments"'))
    for cut in range(first + len("<tool_call>"), arguments):
        for step in (1, 4, cut):
            content, pieces, finish = parse(answer[:cut], step, reason="length")
            assert content == answer[:first].strip() and finish == "length", answer[:cut]
            calls = assemble_tool_calls(pieces)
            if cut <= name_ends:
                assert calls == (), answer[:cut]
            else:
                (call,) = calls
                assert (call.name, call.arguments) == ("get_weather", "") and call.id.startswith("call_")


def test_a_cut_while_opening_another_call_leaks_no_markup():
    whole = ANSWER[ANSWER.index("<tool_call>") : ANSWER.index("<tool_call>", 20)]
    for cut in range(1, len("<tool_call>")):  # a tokenizer that spells the tag in pieces
        content, pieces, finish = parse(whole + "<tool_call>"[:cut], 3, reason="length")
        assert content == "" and finish == "length" and len(assemble_tool_calls(pieces)) == 1
    content, _, finish = parse("Try <tool", 3, reason="length")  # after text it may be text: it stays
    assert (content, finish) == ("Try <tool", "length")
    assert parse("<tool", 2)[0] == "<tool"  # an answer that ended there said so


def test_arguments_are_compact_json_and_their_pieces_add_up_to_it():
    answer = (
        '<tool_call>\n{"name": "note", "arguments": {\r"text" :\t"a  b, \\"c\\": d",\n "city": "Zürich",'
        ' "tags": [ 1 , {"k": null} ]}}\n</tool_call>'
    )
    for step in (1, 2, 7, len(answer)):
        _, pieces, finish = parse(answer, step)
        (call,) = assemble_tool_calls(pieces)
        assert call.arguments == '{"text":"a  b, \\"c\\": d","city":"Zürich","tags":[1,{"k":null}]}'
        assert json.loads(call.arguments)["text"] == 'a  b, "c": d' and finish == "tool_calls"
        assert all(p.arguments or p.id for p in pieces)  # no empty pieces from whitespace alone


@pytest.fixture(scope="module")
def compiler(demo_model):
    tokenizer = AutoTokenizer.from_pretrained(demo_model)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer), stop_token_ids=[eos])
    return tokenizer, xgr.GrammarCompiler(info)


def random_walk(compiler, request: EngineRequest, seed: int, limit: int = 400) -> str:
    """Whatever tokens a model picks among those the grammar allows, until the grammar ends."""
    tokenizer, compile_ = compiler
    matcher = xgr.GrammarMatcher(compile_.compile_structural_tag(structural_tag(request)))
    bitmask = xgr.allocate_token_bitmask(1, len(tokenizer))
    rng, out = random.Random(seed), []
    for _ in range(limit):
        if matcher.is_terminated():
            return tokenizer.decode(out, skip_special_tokens=True)
        matcher.fill_next_token_bitmask(bitmask)
        allowed = bitmask_to_bool_mask(bitmask, len(tokenizer))[0].nonzero().flatten().tolist()
        token = rng.choice(allowed)
        assert matcher.accept_token(token)
        out.append(token)
    pytest.fail("the grammar did not end")


def request(tool_choice, parallel: bool = True) -> EngineRequest:
    return EngineRequest(
        (ChatTurn.user("?"),), tools=(WEATHER, CLOCK), tool_choice=tool_choice, parallel_tool_calls=parallel
    )


@pytest.mark.parametrize("seed", range(2))
def test_required_means_only_calls_of_the_given_tools_with_valid_arguments(compiler, seed):
    content, pieces, finish = parse(random_walk(compiler, request("required"), seed), 7)
    calls = assemble_tool_calls(pieces)
    assert content == "" and finish == "tool_calls" and calls
    for call in calls:
        arguments = json.loads(call.arguments)
        assert call.name in ("get_weather", "clock")
        if call.name == "get_weather":
            assert arguments["city"] in ("Paris", "Oslo") and 1 <= arguments["days"] <= 7


@pytest.mark.parametrize("seed", range(2))
def test_a_named_function_is_called_exactly_once(compiler, seed):
    named = {"type": "function", "function": {"name": "get_weather"}}
    _, pieces, finish = parse(random_walk(compiler, request(named), seed), 5)
    (call,) = assemble_tool_calls(pieces)
    assert call.name == "get_weather" and finish == "tool_calls"


@pytest.mark.parametrize("seed", range(2))
def test_no_parallel_calls_means_one_call(compiler, seed):
    _, pieces, _ = parse(random_walk(compiler, request("required", parallel=False), seed), 5)
    assert len(assemble_tool_calls(pieces)) == 1
