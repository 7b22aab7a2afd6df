"""What a request asks for beyond plain decoding: named so an engine without it refuses it, and bounded."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.engine.capabilities import (
    ALL_FEATURES,
    MAX_STOP_TOKEN_IDS,
    check_sampling_extensions,
    refuse_unsupported,
    requested_features,
)
from vlserve.errors import ClientError

REQUEST = EngineRequest.chat([ChatTurn.user("hi")])
PLAIN = SamplingParams()


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"min_p": 0.1}, "min_p"),
        ({"stop_token_ids": (7,)}, "stop_token_ids"),
        ({"include_stop_str_in_output": True}, "include_stop_str_in_output"),
        ({"skip_special_tokens": False}, "skip_special_tokens"),
        ({"spaces_between_special_tokens": False}, "spaces_between_special_tokens"),
    ],
)
def test_an_engine_without_a_vllm_extension_refuses_it_by_name(change, name):
    params = replace(PLAIN, **change)
    assert requested_features(REQUEST, params) == [name]
    refuse_unsupported(REQUEST, params, supported=ALL_FEATURES, engine="full")
    with pytest.raises(ClientError, match=f"'{name}' is not supported by the small engine") as refused:
        refuse_unsupported(REQUEST, params, supported=ALL_FEATURES - {name}, engine="small")
    assert (refused.value.param, refused.value.code) == (name, "unsupported_parameter")


def test_the_defaults_are_not_a_use():
    assert requested_features(REQUEST, PLAIN) == []
    refuse_unsupported(REQUEST, PLAIN, supported=frozenset(), engine="bare")


@pytest.mark.parametrize(
    ("change", "vocab_size", "param", "message"),
    [
        ({"min_p": 1.5}, None, "min_p", "between 0 and 1"),
        ({"stop_token_ids": tuple(range(MAX_STOP_TOKEN_IDS + 1))}, None, "stop_token_ids", "at most 64"),
        ({"stop_token_ids": (3, -1)}, None, "stop_token_ids", "token id -1, outside"),
        (
            {"stop_token_ids": (3, 100)},
            100,
            "stop_token_ids",
            r"token id 100, outside this model's vocabulary \(0-99\)",
        ),
    ],
)
def test_extensions_out_of_range_are_refused_naming_the_parameter(change, vocab_size, param, message):
    with pytest.raises(ClientError, match=message) as refused:
        check_sampling_extensions(replace(PLAIN, **change), vocab_size=vocab_size)
    assert refused.value.param == param


def test_every_engine_checks_the_ranges_it_can_without_knowing_the_vocabulary():
    with pytest.raises(ClientError, match="between 0 and 1"):
        refuse_unsupported(REQUEST, replace(PLAIN, min_p=-0.1), supported=ALL_FEATURES, engine="any")
    with pytest.raises(ClientError, match="at most 64"):
        refuse_unsupported(
            REQUEST, replace(PLAIN, stop_token_ids=tuple(range(65))), supported=ALL_FEATURES, engine="any"
        )


def test_ids_within_the_vocabulary_and_the_limit_pass():
    check_sampling_extensions(replace(PLAIN, min_p=1.0, stop_token_ids=tuple(range(MAX_STOP_TOKEN_IDS))), vocab_size=64)
