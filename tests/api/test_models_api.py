"""/v1/models/{id} gives the served model's card; endpoints vlserve does not serve say so in a 404."""

from __future__ import annotations

import dataclasses

import pytest

from tests.api.fakes import FakeEngine
from tests.api.test_bad_input import assert_error


def test_the_served_model_is_retrieved_by_its_id_even_with_a_slash(make_client):
    engine = FakeEngine()
    engine._info = dataclasses.replace(engine.info, id="Qwen/Qwen3-VL-30B-A3B-Instruct")
    client = make_client(engine)
    card = client.get("/v1/models/Qwen/Qwen3-VL-30B-A3B-Instruct")
    assert card.status_code == 200, card.text
    assert card.json() == client.get("/v1/models").json()["data"][0]
    assert card.json()["id"] == "Qwen/Qwen3-VL-30B-A3B-Instruct" and card.json()["object"] == "model"


def test_another_model_id_is_a_404_in_the_envelope(client):
    error = assert_error(client.get("/v1/models/gpt-4o"), 404, code="model_not_found", says="serves 'fake-vl'")
    assert error["type"] == "not_found_error"
    assert_error(client.get("/v1/models/fake-vl/extra"), 404, code="model_not_found")


@pytest.mark.parametrize(
    ("method", "path", "says"),
    [
        ("POST", "/v1/embeddings", "embedding model elsewhere"),
        ("GET", "/v1/embeddings", "does not serve embeddings"),
        ("POST", "/v1/responses", "chat completions"),
        ("GET", "/v1/responses/resp_123", "chat completions"),
        ("DELETE", "/v1/responses/resp_123", "does not serve the responses api"),
    ],
)
def test_unserved_openai_endpoints_say_so_and_what_to_use(client, method, path, says):
    response = client.request(method, path, json={"model": "fake-vl", "input": "hi"})
    assert_error(response, 404, code="unsupported_endpoint", says=says)
