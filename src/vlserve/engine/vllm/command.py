"""The `vllm serve` command line vlserve starts: flags from settings, limits from vlserve's own.

vLLM binds the loopback interface only, on a port vlserve picks, and takes its API key from the
environment (``VLLM_API_KEY``), never from the command line where ``ps`` would show it. Extra
arguments come last, so an operator's ``--vllm-args`` override what vlserve derives; their keys of the JSON options
vlserve sets too (``--limit-mm-per-prompt``, ``--mm-processor-kwargs``) are merged into vlserve's, which are passed
once (extra_args). Options vlserve owns were refused when the settings were read (owned_flags).

Tool calling is on (``--enable-auto-tool-choice``), read with the ``hermes`` parser: Qwen3-VL writes
each call as ``<tool_call>{"name": …, "arguments": …}</tool_call>``, the JSON format vLLM's Hermes
parser reads (Qwen's function-calling guide names it for its Qwen2.5 and Qwen3 models). Without these
flags vLLM refuses ``tool_choice: "auto"``. An operator's ``--tool-call-parser`` replaces ours, and an operator's
``--enable-auto-tool-choice`` or ``--no-enable-auto-tool-choice`` ours, in any spelling vLLM reads.

A checkpoint that thinks (:func:`vlserve.engine.reasoning.checkpoint_thinks`, e.g. Qwen3-VL-…-Thinking) gets
``--reasoning-parser qwen3``, so vLLM sends the reasoning apart from the answer and applies response formats
and tool calls after ``</think>``; an operator's ``--reasoning-parser`` replaces ours.

``--quantization fp8`` is passed as ``fp8_per_tensor``, its name in vLLM 0.32 (see quantization).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from vlserve.engine.reasoning import checkpoint_thinks
from vlserve.engine.vllm.extra_args import read_extra_args
from vlserve.engine.vllm.quantization import vllm_name
from vlserve.media.resize import ImageBudget
from vlserve.settings import Settings

VLLM_VERSION = "0.32.0"  # the version `pip install 'vlserve[vllm]'` installs
DEFAULT_MAX_MODEL_LEN = 32768  # not the model's 262144: a context vLLM can hold beside the weights on one GPU
TOOL_CALL_PARSER = "hermes"  # Qwen3-VL's <tool_call> JSON format
REASONING_PARSER = "qwen3"  # <think>…</think>, with or without the opening tag in the output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildCommand:
    argv: list[str]
    env: dict[str, str]


def vllm_command(settings: Settings, *, model_dir: Path, port: int, api_key: str, budget: ImageBudget) -> ChildCommand:
    s = settings
    extra = read_extra_args(s.vllm_args)
    limits = extra.merged_with("--limit-mm-per-prompt", {"image": s.max_images_per_request, "video": 0})
    size = {"size": {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}}
    argv = [
        s.vllm_executable, "serve", str(model_dir),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--served-model-name", s.model_name(),
        "--max-model-len", str(s.max_model_len or DEFAULT_MAX_MODEL_LEN),
        "--tensor-parallel-size", str(s.vllm_tensor_parallel_size),
        "--gpu-memory-utilization", str(s.vllm_gpu_memory_utilization),
        "--limit-mm-per-prompt", json.dumps(limits),
        "--mm-processor-kwargs", json.dumps(extra.merged_with("--mm-processor-kwargs", size)),
    ]  # fmt: skip
    if s.vllm_tensor_parallel_size > 1:
        argv += ["--mm-encoder-tp-mode", "data"]  # the small vision encoder runs data-parallel, not split
    if s.vllm_expert_parallel:
        argv.append("--enable-expert-parallel")
    if s.vllm_quantization:
        method = vllm_name(s.vllm_quantization)
        if method != s.vllm_quantization:
            log.info("--quantization %s: passing %s, its name in vLLM %s", s.vllm_quantization, method, VLLM_VERSION)
        argv += ["--quantization", method]
    if not extra.sets("--enable-auto-tool-choice", "--no-enable-auto-tool-choice"):
        argv.append("--enable-auto-tool-choice")
    if not extra.sets("--tool-call-parser"):
        argv += ["--tool-call-parser", TOOL_CALL_PARSER]
    if not extra.sets("--reasoning-parser") and checkpoint_thinks(model_dir):
        argv += ["--reasoning-parser", REASONING_PARSER]
    argv += extra.passed
    env = {**os.environ, "VLLM_API_KEY": api_key}
    return ChildCommand(argv, env)
