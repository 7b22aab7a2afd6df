"""Reasoning through the other backends: the managed vLLM gets Qwen3's reasoning parser for a checkpoint that
thinks, and a remote upstream's reasoning (vLLM 0.32's ``reasoning``, older vLLM's and SGLang's
``reasoning_content``) and its reasoning-token count come through, streamed or whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.test_reasoning import THINKING_TEMPLATE
from vlserve.engine.base import ChatTurn, EngineRequest
from vlserve.engine.remote.wire import ChunkReader, chat_inputs, completion_deltas
from vlserve.engine.vllm.command import vllm_command
from vlserve.media.resize import ImageBudget
from vlserve.settings import Settings


def thinking_checkpoint(path: Path) -> Path:
    added = [{"id": 7, "content": "<think>"}, {"id": 8, "content": "</think>"}]
    (path / "tokenizer.json").write_text(json.dumps({"added_tokens": added}))
    (path / "chat_template.jinja").write_text(THINKING_TEMPLATE)
    return path


def argv(model_dir: Path, vllm_args: list[str] | None = None) -> list[str]:
    settings = Settings(engine="vllm", model=model_dir, data_dir=model_dir, vllm_args=vllm_args or [])
    budget = ImageBudget(64 * 1024, 256 * 1024, 32)
    return vllm_command(settings, model_dir=model_dir, port=8123, api_key="k" * 32, budget=budget).argv


def test_vllm_reads_reasoning_only_for_a_checkpoint_that_thinks(tmp_path):
    assert "--reasoning-parser" not in argv(tmp_path)
    args = argv(thinking_checkpoint(tmp_path))
    assert args[args.index("--reasoning-parser") + 1] == "qwen3"
    operator = argv(tmp_path, ["--reasoning-parser=deepseek_r1"])
    assert [a for a in operator if a.startswith("--reasoning-parser")] == ["--reasoning-parser=deepseek_r1"]


def test_chat_template_kwargs_go_upstream():
    request = EngineRequest((ChatTurn.user("hi"),), chat_template_kwargs={"enable_thinking": False})
    assert chat_inputs(request, [])["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in chat_inputs(EngineRequest((ChatTurn.user("hi"),)), [])


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}"


@pytest.mark.parametrize("name", ["reasoning", "reasoning_content"])
def test_streamed_reasoning_from_either_name(name):
    reader = ChunkReader(image_tokens=0, scrub=str)
    deltas = []
    for event in (
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {name: "Three bars."}}]},
        {"choices": [{"index": 0, "delta": {"content": "8"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5,
                                  "completion_tokens_details": {"reasoning_tokens": 4}}},
    ):  # fmt: skip
        deltas += list(reader.feed(sse(event)))
    assert "".join(d.reasoning for d in deltas) == "Three bars."
    assert "".join(d.text for d in deltas) == "8"
    assert deltas[-1].usage.reasoning_tokens == 4


def test_a_whole_answer_with_reasoning():
    body = {"choices": [{"message": {"content": None, "reasoning": "why"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}  # fmt: skip
    answer, final = completion_deltas(json.dumps(body).encode(), 0)
    assert (answer.reasoning, answer.text, final.finish_reason) == ("why", "", "length")
    assert final.usage.reasoning_tokens is None  # not counted upstream: not said
