"""The `vllm serve` command line vlserve starts: flags from settings, limits from vlserve's own.

vLLM binds the loopback interface only, on a port vlserve picks, and takes its API key from the
environment (``VLLM_API_KEY``), never from the command line where ``ps`` would show it. Extra
arguments come last, so an operator's ``--vllm-args`` override what vlserve derives.

Tool calling is on (``--enable-auto-tool-choice``), read with the ``hermes`` parser: Qwen3-VL writes
each call as ``<tool_call>{"name": …, "arguments": …}</tool_call>``, the JSON format vLLM's Hermes
parser reads (Qwen's function-calling guide names it for its Qwen2.5 and Qwen3 models). Without these
flags vLLM refuses ``tool_choice: "auto"``. An operator's ``--tool-call-parser`` replaces ours.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vlserve.media.resize import ImageBudget
from vlserve.settings import Settings

VLLM_VERSION = "0.32.0"  # the version `pip install 'vlserve[vllm]'` installs
DEFAULT_MAX_MODEL_LEN = 32768  # not the model's 262144: a context vLLM can hold beside the weights on one GPU
TOOL_CALL_PARSER = "hermes"  # Qwen3-VL's <tool_call> JSON format


@dataclass(frozen=True)
class ChildCommand:
    argv: list[str]
    env: dict[str, str]


def vllm_command(settings: Settings, *, model_dir: Path, port: int, api_key: str, budget: ImageBudget) -> ChildCommand:
    s = settings
    argv = [
        s.vllm_executable, "serve", str(model_dir),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--served-model-name", s.model_name(),
        "--max-model-len", str(s.max_model_len or DEFAULT_MAX_MODEL_LEN),
        "--tensor-parallel-size", str(s.vllm_tensor_parallel_size),
        "--gpu-memory-utilization", str(s.vllm_gpu_memory_utilization),
        "--limit-mm-per-prompt", json.dumps({"image": s.max_images_per_request, "video": 0}),
        "--mm-processor-kwargs",
        json.dumps({"size": {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}}),
    ]  # fmt: skip
    if s.vllm_tensor_parallel_size > 1:
        argv += ["--mm-encoder-tp-mode", "data"]  # the small vision encoder runs data-parallel, not split
    if s.vllm_expert_parallel:
        argv.append("--enable-expert-parallel")
    if s.vllm_quantization:
        argv += ["--quantization", s.vllm_quantization]
    if not _sets(s.vllm_args, "--enable-auto-tool-choice"):
        argv.append("--enable-auto-tool-choice")
    if not _sets(s.vllm_args, "--tool-call-parser"):
        argv += ["--tool-call-parser", TOOL_CALL_PARSER]
    argv += s.vllm_args
    env = {**os.environ, "VLLM_API_KEY": api_key}
    return ChildCommand(argv, env)


def _sets(args: list[str], flag: str) -> bool:
    """Whether ``args`` give ``flag``, as ``--flag value`` or ``--flag=value``."""
    return any(arg == flag or arg.startswith(f"{flag}=") for arg in args)
