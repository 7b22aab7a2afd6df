"""/v1/completions and /v1/models/{id} on a real server, through the official openai client.

Text completions continue the prompt as raw text (no chat template), streamed or not, with OpenAI's
defaults (16 tokens); what vlserve does not implement is a 4xx in the error envelope. Through
``--engine remote`` a completion reaches the upstream's own /v1/completions and comes back unchanged.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.e2e

MODEL = "vlserve-demo-random"
PROMPT = "The chart shows the values for"


def greedy(client: OpenAI, prompt: str = PROMPT, **extra):
    return client.completions.create(model=MODEL, prompt=prompt, temperature=0, **extra)


def test_a_completion_continues_the_prompt_with_openais_defaults(openai_client):
    answer = greedy(openai_client)
    choice = answer.choices[0]
    assert answer.object == "text_completion" and answer.model == MODEL
    assert isinstance(choice.text, str) and choice.text and choice.logprobs is None
    assert answer.usage.completion_tokens <= 16  # OpenAI's and vLLM's default limit, not the server's 512
    assert choice.finish_reason == "stop" or answer.usage.completion_tokens == 16
    assert 0 < answer.usage.prompt_tokens < 20  # the prompt alone: no chat template around it
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streaming_gives_the_same_text_and_the_usage_last(openai_client):
    whole = greedy(openai_client, max_tokens=8)
    stream = greedy(openai_client, max_tokens=8, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason


def test_a_benchmark_request_as_guidellm_sends_it(server):
    """guidellm's text-completions body: usage options vLLM adds, ``stop: null``, ``ignore_eos``."""
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 8, "stop": None, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_echo_and_stop(openai_client):
    text = greedy(openai_client, max_tokens=12).choices[0].text
    echoed = greedy(openai_client, max_tokens=12, echo=True).choices[0].text
    assert echoed == PROMPT + text
    cut = text[len(text) // 2 :][:3]  # a piece from the middle of the answer
    if not cut.strip():
        pytest.skip(f"the random model's answer has no usable stop string: {text!r}")
    stopped = greedy(openai_client, max_tokens=12, stop=[cut]).choices[0]
    assert stopped.text == text[: text.index(cut)] and stopped.finish_reason == "stop"


def test_a_prompt_as_a_list_of_one_string_is_the_same_prompt(openai_client):
    one = greedy(openai_client, max_tokens=4).choices[0].text
    assert greedy(openai_client, [PROMPT], max_tokens=4).choices[0].text == one


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"prompt": [1, 2, 3]}, "prompt", "invalid_request"),
        ({"prompt": ["one", "two"]}, "prompt", "invalid_request"),
        ({"suffix": "and that was it"}, "suffix", "unsupported_parameter"),
        ({"best_of": 2}, "best_of", "unsupported_parameter"),
        ({"prompt": "chart " * 5000}, "prompt", "context_length_exceeded"),
        ({"prompt": "look: <|image_pad|>"}, "prompt", "invalid_request"),
    ],
)
def test_what_cannot_be_answered_is_a_400_naming_the_parameter(openai_client, extra, param, code):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.completions.create(**{"model": MODEL, "prompt": PROMPT, "max_tokens": 4, **extra})
    error = refused.value.body
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_the_model_card_is_retrieved_by_id_and_other_ids_are_404(openai_client):
    card = openai_client.models.retrieve(MODEL)
    assert card.id == MODEL and card.model_extra["max_model_len"] > 0
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.models.retrieve("Qwen/Qwen3-VL-30B-A3B-Instruct")
    assert missing.value.body["code"] == "model_not_found"


def test_embeddings_and_responses_are_404s_that_say_what_to_use(openai_client):
    with pytest.raises(openai.NotFoundError) as embeddings:
        openai_client.embeddings.create(model=MODEL, input="hello")
    assert "embedding model elsewhere" in embeddings.value.body["message"]
    with pytest.raises(openai.NotFoundError) as responses:
        openai_client.responses.create(model=MODEL, input="hello")
    assert responses.value.body["code"] == "unsupported_endpoint"


@pytest.fixture(scope="module")
def gateway(start_server, server):
    """``--engine remote`` in front of the shared server."""
    return start_server(engine="remote", upstream=server.url)


def test_a_completion_through_the_remote_engine_is_the_upstreams_own(gateway, openai_client):
    through = OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)
    direct = greedy(openai_client, max_tokens=10, echo=True)
    whole = greedy(through, max_tokens=10, echo=True)
    assert whole.choices[0].text == direct.choices[0].text and whole.usage == direct.usage
    chunks = list(greedy(through, max_tokens=10, stream=True, stream_options={"include_usage": True}))
    assert PROMPT + "".join(c.choices[0].text for c in chunks if c.choices) == direct.choices[0].text
    assert chunks[-1].usage == direct.usage
    with pytest.raises(openai.BadRequestError) as refused:
        through.completions.create(model=MODEL, prompt="chart " * 5000, max_tokens=4)
    assert refused.value.body["code"] == "context_length_exceeded"  # the upstream's refusal, passed on
