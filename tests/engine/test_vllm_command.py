"""The managed `vllm serve` command line: tool calling is on with Qwen3-VL's parser unless the operator picks one."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlserve.engine.vllm.command import vllm_command
from vlserve.media.resize import ImageBudget
from vlserve.settings import Settings


def argv(tmp_path: Path, vllm_args: str = "") -> list[str]:
    settings = Settings(engine="vllm", model=tmp_path, data_dir=tmp_path, vllm_args=vllm_args)
    budget = ImageBudget(64 * 1024, 256 * 1024, 32)
    return vllm_command(settings, model_dir=tmp_path, port=8123, api_key="k" * 32, budget=budget).argv


def test_tool_calls_are_parsed_with_the_hermes_parser_by_default(tmp_path):
    args = argv(tmp_path)
    assert args.count("--enable-auto-tool-choice") == 1
    assert args[args.index("--tool-call-parser") + 1] == "hermes"


@pytest.mark.parametrize("given", ["--tool-call-parser qwen3_xml", "--tool-call-parser=qwen3_xml"])
def test_an_operators_tool_call_parser_replaces_ours(tmp_path, given):
    args = argv(tmp_path, f"--max-num-seqs 8 {given}")
    assert "hermes" not in args and args[-len(given.split()) :] == given.split()  # theirs, last, once
    assert sum(a.startswith("--tool-call-parser") for a in args) == 1
    assert args.count("--enable-auto-tool-choice") == 1


def test_auto_tool_choice_given_again_by_the_operator_is_not_doubled(tmp_path):
    args = argv(tmp_path, "--enable-auto-tool-choice")
    assert args.count("--enable-auto-tool-choice") == 1 and args[-1] == "--enable-auto-tool-choice"
