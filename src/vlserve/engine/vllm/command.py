"""The `vllm serve` command line vlserve starts: flags from settings, limits from vlserve's own.

vLLM binds the loopback interface only, on a port vlserve picks, and takes its API key from the
environment (``VLLM_API_KEY``), never from the command line where ``ps`` would show it. Extra
arguments come last, so an operator's ``--vllm-args`` override what vlserve derives; their keys of the JSON options
vlserve sets too (``--limit-mm-per-prompt``, ``--mm-processor-kwargs``, ``--media-io-kwargs``) are merged into
vlserve's, which are passed once (extra_args). Options vlserve owns were refused when the settings were read
(owned_flags).

Tool calling is on (``--enable-auto-tool-choice``), read with the ``hermes`` parser: Qwen3-VL writes
each call as ``<tool_call>{"name": …, "arguments": …}</tool_call>``, the JSON format vLLM's Hermes
parser reads (Qwen's function-calling guide names it for its Qwen2.5 and Qwen3 models). Without these
flags vLLM refuses ``tool_choice: "auto"``. An operator's ``--tool-call-parser`` replaces ours, and an operator's
``--enable-auto-tool-choice`` or ``--no-enable-auto-tool-choice`` ours, in any spelling vLLM reads.

A checkpoint that thinks (:func:`vlserve.engine.reasoning.checkpoint_thinks`, e.g. Qwen3-VL-…-Thinking) gets
``--reasoning-parser qwen3``, so vLLM sends the reasoning apart from the answer and applies response formats
and tool calls after ``</think>``; an operator's ``--reasoning-parser`` replaces ours.

``--quantization fp8`` is passed as ``fp8_per_tensor``, its name in vLLM 0.32 (see quantization).

Video follows vlserve's video settings. Off (``VLSERVE_VIDEO=false``): ``--limit-mm-per-prompt`` video 0, so
vLLM profiles and takes none. On: ``VLSERVE_MAX_VIDEOS_PER_REQUEST`` videos; vLLM decodes each clip itself
(vlserve sends the client's container bytes, never frames) and samples it as vlserve does,
``--media-io-kwargs '{"video": {"fps": VLSERVE_VIDEO_FPS, "num_frames"/"max_frames": the frame cap}}'`` (Qwen3-VL's
loader reads ``fps`` and ``max_frames``, vLLM's default loader ``fps`` and ``num_frames``), and its video processor
resizes them, for Qwen3-VL, into its whole-video budget, the one vlserve's own decoder uses, given as
``videos_kwargs`` (the flat ``size`` is the per-image budget, which vLLM would otherwise apply to a whole video).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from vlserve.engine.reasoning import checkpoint_thinks
from vlserve.engine.vllm.extra_args import ExtraArgs, read_extra_args
from vlserve.engine.vllm.quantization import vllm_name
from vlserve.media.resize import ImageBudget
from vlserve.media.video import SMALLEST_FRAME, VIDEO_TOTAL_PIXELS
from vlserve.settings import Settings

VLLM_VERSION = "0.32.0"  # the version `pip install 'vlserve[vllm]'` installs
DEFAULT_MAX_MODEL_LEN = 32768  # not the model's 262144: a context vLLM can hold beside the weights on one GPU
TOOL_CALL_PARSER = "hermes"  # Qwen3-VL's <tool_call> JSON format
REASONING_PARSER = "qwen3"  # <think>…</think>, with or without the opening tag in the output

# Model types whose video processor's size is a whole video's pixels (Qwen2-VL's and Qwen2.5-VL's is a frame's,
# which the flat per-image size already sets).
WHOLE_VIDEO_BUDGET = frozenset({"qwen3_vl", "qwen3_vl_moe"})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildCommand:
    argv: list[str]
    env: dict[str, str]


def vllm_command(settings: Settings, *, model_dir: Path, port: int, api_key: str, budget: ImageBudget) -> ChildCommand:
    s = settings
    extra = read_extra_args(s.vllm_args)
    limits = mm_limits(s, extra)
    size: dict = {"size": {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}}
    if s.video and _model_type(model_dir) in WHOLE_VIDEO_BUDGET:
        size["videos_kwargs"] = {"size": {"shortest_edge": SMALLEST_FRAME, "longest_edge": VIDEO_TOTAL_PIXELS}}
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
    media_io = extra.merged_with("--media-io-kwargs", video_sampling(s) if s.video else {})
    if media_io:
        argv += ["--media-io-kwargs", json.dumps(media_io)]
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


def _model_type(model_dir: Path) -> str | None:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def mm_limits(s: Settings, extra: ExtraArgs | None = None) -> dict:
    """``--limit-mm-per-prompt``: vlserve's images and videos (0 with video off), the operator's keys merged in."""
    extra = extra or read_extra_args(s.vllm_args)
    videos = s.max_videos_per_request if s.video else 0
    return extra.merged_with("--limit-mm-per-prompt", {"image": s.max_images_per_request, "video": videos})


def max_videos(s: Settings) -> int:
    """The videos per request vLLM is told to take: a count, or the ``count`` of vLLM's object form."""
    video = mm_limits(s).get("video", 0)
    count = video.get("count", 999) if isinstance(video, dict) else video  # vLLM's default count is 999
    return int(count or 0)


def video_sampling(s: Settings) -> dict:
    """How vLLM samples a video: vlserve's rate and frame cap."""
    cap = s.video_limits().frame_cap
    return {"video": {"fps": s.video_fps, "num_frames": cap, "max_frames": cap}}
