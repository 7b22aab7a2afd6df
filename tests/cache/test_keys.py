"""Which requests are cacheable, and what their cache key depends on."""

from __future__ import annotations

import dataclasses

import pytest

from vlserve.cache.keys import cache_key, cacheable, content_hash, directives
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams, ToolCall
from vlserve.structured import OutputFormat

GREEDY = SamplingParams(temperature=0.0, max_tokens=16)
REQUEST = EngineRequest((ChatTurn.user("what is the peak?", num_images=1),))
IMAGE = content_hash(b"\x89PNG one image")


def key(**changes) -> str:
    parts = {
        "kind": "chat", "scope": "anonymous", "server": {"model": "m"}, "request": REQUEST,
        "image_hashes": [IMAGE], "params": GREEDY, "stream": False, **changes,
    }  # fmt: skip
    return cache_key(**parts)


def test_greedy_or_seeded_requests_are_cacheable_sampled_ones_are_not() -> None:
    assert cacheable(SamplingParams(temperature=0.0))
    assert cacheable(SamplingParams(temperature=0.9, top_k=1))
    assert cacheable(SamplingParams(temperature=0.9, seed=7))
    assert not cacheable(SamplingParams(temperature=0.9))
    assert not cacheable(SamplingParams())  # the model's default temperature may sample


def test_the_same_request_has_the_same_key_whatever_its_object_identity() -> None:
    again = EngineRequest((ChatTurn.user("what is the peak?", num_images=1),))
    assert key() == key(request=again, params=SamplingParams(temperature=0.0, max_tokens=16))
    assert len(key()) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.0, "top_k": 1},
        {"max_tokens": 17},
        {"seed": 1},
        {"stop": ("\n",)},
        {"top_p": 0.5},
        {"presence_penalty": 0.1},
        {"repetition_penalty": 1.1},
        {"logit_bias": {5: 1.0}},
        {"logprobs": True},
        {"top_logprobs": 2},
        {"return_token_ids": True},
        {"min_tokens": 2},
        {"output": OutputFormat.of("answer", {"type": "object"})},
        {"min_p": 0.1},
        {"stop_token_ids": (7,)},
        {"include_stop_str_in_output": True},
        {"skip_special_tokens": False},
        {"spaces_between_special_tokens": False},
    ],
)
def test_any_sampling_or_rendering_change_changes_the_key(change) -> None:
    assert key(params=dataclasses.replace(GREEDY, **change)) != key()


def test_incremental_delivery_does_not_change_the_key() -> None:
    assert key(params=dataclasses.replace(GREEDY, incremental=False)) == key()


@pytest.mark.parametrize(
    "change",
    [
        {"image_hashes": [content_hash(b"\x89PNG another image")]},
        {"image_hashes": []},
        {"server": {"model": "other"}},
        {"scope": "key:key_2"},
        {"kind": "completion"},
        {"stream": True},
        {"request": EngineRequest((ChatTurn.user("what is the low?", num_images=1),))},
        {"request": EngineRequest((ChatTurn("system", ({"type": "text", "text": "what is the peak?"},)),))},
        {"request": EngineRequest(REQUEST.turns, tools=({"type": "function", "function": {"name": "f"}},))},
        {"request": EngineRequest(REQUEST.turns, tool_choice="none")},
        {"request": EngineRequest(REQUEST.turns, parallel_tool_calls=False)},
        {"request": EngineRequest((), prompt="what is the peak?")},
    ],
)
def test_input_model_scope_and_images_change_the_key(change) -> None:
    assert key(**change) != key()


def test_tool_calls_and_their_answers_are_part_of_the_key() -> None:
    call = ToolCall("call_1", "lookup", '{"q": "a"}')
    turns = (
        ChatTurn.user("hi"),
        ChatTurn("assistant", (), (call,)),
        ChatTurn("tool", ({"type": "text", "text": "1"},), (), "call_1"),
    )
    other_call = ToolCall("call_1", "lookup", '{"q": "b"}')
    other = (turns[0], ChatTurn("assistant", (), (other_call,)), turns[2])
    answered_other = (*turns[:2], ChatTurn("tool", ({"type": "text", "text": "1"},), (), "call_2"))
    keys = {key(request=EngineRequest(t)) for t in (turns, other, answered_other)}
    assert len(keys) == 3


def test_image_order_matters() -> None:
    other = content_hash(b"second")
    assert key(image_hashes=[IMAGE, other]) != key(image_hashes=[other, IMAGE])


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, (True, True)), ("max-age=0", (True, True)), ("No-Cache", (False, True)),
     ("no-cache, no-store", (False, False)), ("no-store", (False, False))],
)  # fmt: skip
def test_cache_control_decides_reading_and_writing(header, expected) -> None:
    assert directives(header) == expected
