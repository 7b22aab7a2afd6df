"""Every field of vLLM 0.32's chat and completion requests is honoured or refused by name; unknown keys are 400s.

The field lists are copied from vLLM 0.32.0 (``vllm/entrypoints/openai/chat_completion/protocol.py``
``ChatCompletionRequest`` and ``vllm/entrypoints/openai/completion/protocol.py`` ``CompletionRequest``, the
wheel on PyPI), in their order. Each name is either declared by vlserve's request model (honoured: its
behaviour is tested where the feature is, e.g. tests/engine/test_sampling.py, tests/e2e) or refused unless
it holds vLLM's harmless default.
"""

from __future__ import annotations

import pytest

from tests.api.test_bad_input import assert_error
from vlserve.api.completion_protocol import CompletionRequest
from vlserve.api.protocol import ChatCompletionRequest
from vlserve.api.request_fields import refused_on


def names(text: str) -> list[str]:
    return text.split()


VLLM_0_32_CHAT = names(
    """
messages model frequency_penalty logit_bias logprobs top_logprobs max_tokens max_completion_tokens n
presence_penalty response_format seed stop stream stream_options temperature top_p tools tool_choice
reasoning_effort thinking_token_budget include_reasoning parallel_tool_calls user use_beam_search top_k min_p
repetition_penalty watermarking length_penalty stop_token_ids include_stop_str_in_output ignore_eos min_tokens
skip_special_tokens spaces_between_special_tokens truncate_prompt_tokens truncation_side prompt_logprobs
logprob_token_ids allowed_token_ids bad_words echo add_generation_prompt continue_final_message
add_special_tokens documents chat_template chat_template_kwargs media_io_kwargs mm_processor_kwargs
structured_outputs priority request_id session_id return_tokens_as_token_ids return_token_ids
routed_experts_prompt_start return_token_offsets return_prompt_text mm_payload return_mm_kwargs cache_salt
kv_transfer_params ec_transfer_params vllm_xargs repetition_detection stream_interval
"""
)

VLLM_0_32_COMPLETION = names(
    """
model prompt echo frequency_penalty logit_bias logprobs max_tokens n presence_penalty seed stop stream
stream_options suffix temperature top_p user use_beam_search top_k min_p repetition_penalty watermarking
length_penalty stop_token_ids include_stop_str_in_output ignore_eos min_tokens skip_special_tokens
spaces_between_special_tokens truncate_prompt_tokens truncation_side allowed_token_ids prompt_logprobs
logprob_token_ids bad_words prompt_embeds add_special_tokens response_format structured_outputs priority
request_id session_id return_tokens_as_token_ids return_token_ids routed_experts_prompt_start
return_token_offsets mm_payload return_mm_kwargs cache_salt kv_transfer_params ec_transfer_params vllm_xargs
repetition_detection thinking_token_budget stream_interval
"""
)

# Refused whenever set (chat's UNSERVED in api/refusals.py): declared so that the request model reads them.
CHAT_REFUSED_DECLARED = {"reasoning_effort"}

# A value of each refused field that would change the answer.
CHANGING = {
    "best_of": 2, "use_beam_search": True, "length_penalty": 0.5, "typical_p": 0.9, "watermarking": True,
    "bad_words": ["x"], "allowed_token_ids": [1, 2], "logprob_token_ids": [1], "prompt_logprobs": 1,
    "repetition_detection": {"max_pattern_size": 4}, "thinking_token_budget": 10, "truncate_prompt_tokens": 5,
    "truncation_side": "left", "echo": True, "add_generation_prompt": False, "continue_final_message": True,
    "add_special_tokens": True, "documents": [{"title": "t", "text": "x"}], "chat_template": "{{ messages }}",
    "media_io_kwargs": {"video": {"num_frames": 4}}, "mm_processor_kwargs": {"max_pixels": 10},
    "mm_payload": "none", "return_mm_kwargs": True, "prompt_embeds": "AAAA", "return_prompt_text": True,
    "return_tokens_as_token_ids": True, "return_token_offsets": True, "routed_experts_prompt_start": 3,
    "stream_interval": 4, "priority": 5, "request_id": "mine", "session_id": "s-1", "cache_salt": "salt",
    "kv_transfer_params": {"do_remote_decode": True}, "ec_transfer_params": {"x": 1}, "vllm_xargs": {"a": 1},
}  # fmt: skip


@pytest.mark.parametrize(
    ("endpoint", "names", "model"),
    [("chat", VLLM_0_32_CHAT, ChatCompletionRequest), ("completions", VLLM_0_32_COMPLETION, CompletionRequest)],
)
def test_each_vllm_field_is_honoured_or_refused(endpoint, names, model):
    declared = set(model.model_fields)
    refused = set(refused_on(endpoint))
    neither = [name for name in names if name not in declared and name not in refused]
    assert neither == [], f"vLLM 0.32 fields vlserve neither serves nor refuses on {endpoint}"
    both = (declared & refused) - CHAT_REFUSED_DECLARED
    assert both == set(), "a field cannot be both served and refused"


def _body(endpoint: str, **extra) -> dict:
    if endpoint == "chat":
        return {"messages": [{"role": "user", "content": "hi"}], **extra}
    return {"prompt": "the sky is", **extra}


def _path(endpoint: str) -> str:
    return "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_a_refused_field_with_a_value_that_matters_is_a_400_naming_it(client, endpoint):
    for name, rule in refused_on(endpoint).items():
        value = CHANGING[name] if CHANGING[name] != rule.default_on(endpoint) else not CHANGING[name]
        r = client.post(_path(endpoint), json=_body(endpoint, **{name: value}))
        assert_error(r, 400, code="unsupported_parameter", param=name, says=name)


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_a_refused_field_at_its_harmless_value_or_null_is_accepted(client, endpoint):
    harmless = {name: rule.default_on(endpoint) for name, rule in refused_on(endpoint).items()}
    harmless.pop("request_id")  # default: none sent (vLLM draws one)
    assert client.post(_path(endpoint), json=_body(endpoint, **harmless)).status_code == 200
    nulls = dict.fromkeys(refused_on(endpoint))
    assert client.post(_path(endpoint), json=_body(endpoint, **nulls)).status_code == 200


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_best_of_is_refused_the_same_on_both_endpoints(client, endpoint):
    r = client.post(_path(endpoint), json=_body(endpoint, best_of=2))
    assert_error(r, 400, code="unsupported_parameter", param="best_of", says="best_of > 1 is not supported")


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_unknown_keys_are_400s_naming_them_as_openai_does(client, endpoint):
    r = client.post(_path(endpoint), json=_body(endpoint, foo_bar=1))
    assert_error(r, 400, code="unknown_parameter", param="foo_bar", says="Unrecognized request argument supplied")
    r = client.post(_path(endpoint), json=_body(endpoint, foo_bar=1, baz=2))
    assert "foo_bar, baz" in r.json()["error"]["message"]


def test_informational_openai_fields_are_accepted(client):
    informational = {"user": "u-1", "metadata": {"team": "risk"}, "store": False, "service_tier": "auto",
                     "prompt_cache_key": "k", "safety_identifier": "s"}  # fmt: skip
    assert client.post("/v1/chat/completions", json=_body("chat", **informational)).status_code == 200


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_stream_options_without_streaming_is_a_400(client, endpoint):
    r = client.post(_path(endpoint), json=_body(endpoint, stream_options={"include_usage": True}))
    assert_error(r, 400, param="stream_options", says="only allowed when stream is true")
    r = client.post(_path(endpoint), json=_body(endpoint, stream=True, stream_options={"include_usge": True}))
    assert_error(r, 400, param="stream_options.include_usge")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "chat_template_kwargs.messages"),
        ({"add_generation_prompt": False}, "chat_template_kwargs.add_generation_prompt"),
        ({"not a name": 1}, "chat_template_kwargs.not a name"),
        ({f"k{i}": i for i in range(17)}, "chat_template_kwargs"),
        ({"enable_thinking": "x" * 5000}, "chat_template_kwargs"),
    ],
)
def test_chat_template_kwargs_cannot_replace_the_templates_inputs(client, kwargs, param):
    r = client.post("/v1/chat/completions", json=_body("chat", chat_template_kwargs=kwargs))
    assert_error(r, 400, param=param)


def test_the_openapi_schema_declares_the_refused_fields_and_nothing_else(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name, endpoint in (("ChatCompletionRequest", "chat"), ("CompletionRequest", "completions")):
        body = schemas[name]
        assert body["additionalProperties"] is False
        assert set(refused_on(endpoint)) <= set(body["properties"])
