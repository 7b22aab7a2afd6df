"""Settings of the model and the engine that runs it: transformers in-process, a managed vLLM, or remote servers."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

DEMO_MODEL_NAME = "vlserve-demo-random"
# The trained chart-reading demo model shipped inside the package (`vlserve demo train` makes it).
BUNDLED_MODEL_DIR = Path(__file__).resolve().parents[1] / "demo" / "checkpoint" / "vlserve-demo"


def default_data_dir() -> Path:
    return Path.home() / ".cache" / "vlserve"


class EngineSettings(BaseSettings):
    """The model served and the backend that runs it."""

    model: Path | None = Field(
        default=None,
        description="Local checkpoint directory (Qwen3-VL-MoE, Qwen3-VL or Qwen2.5-VL), or a model pulled with "
        "`vlserve pull`, by its catalogue name (`qwen3-vl-2b`) or hub id (served from "
        "`VLSERVE_DATA_DIR/models/NAME`). Flag `--model`.",
        json_schema_extra={"default_text": "unset: the bundled chart-reading demo model"},
    )
    served_model_name: str | None = Field(
        default=None,
        description="Model id clients send. Flag `--served-model-name`.",
        json_schema_extra={"default_text": "the checkpoint directory name; `remote`: `VLSERVE_UPSTREAM_MODEL`"},
    )
    engine: Literal["transformers", "vllm", "remote"] = Field(
        default="transformers",
        description="Inference backend: `transformers` (in-process), `vllm` (a vLLM child vlserve starts and "
        "supervises) or `remote` (existing OpenAI-compatible servers, e.g. a vLLM or SGLang fleet). Flag `--engine`.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="`auto` (CUDA when present), `cpu` or `cuda`."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="`auto` (bfloat16 on CUDA; on a CPU, bfloat16 for a bfloat16 checkpoint where the CPU computes "
        "it natively — AVX-512 BF16, AMX, Arm BF16 — else float32), `float32`, `bfloat16` or `float16`.",
    )
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Threads the transformers engine computes with.",
        json_schema_extra={"default_text": "torch's choice, capped by the CPU affinity and the container's CPU quota"},
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where `vlserve pull` puts models (`models/NAME`), the demo model is built, the default "
        "database lives and each server caches the files of the document jobs it works on.",
        json_schema_extra={"default_text": "`~/.cache/vlserve`"},
    )


class SchedulingSettings(BaseSettings):
    """How requests are queued and batched for the engine."""

    max_batch_size: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Requests decoded together per step (continuous batching). Flag `--max-batch-size`.",
    )
    max_queue_size: int = Field(
        default=64, ge=1, description="Requests waiting for the engine before new ones get `429 Retry-After`."
    )
    batch_wait_ms: float = Field(
        default=5.0, ge=0, description="Milliseconds the scheduler waits to fill a batch once one request is in."
    )
    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="Context limit: the prompt (images included) plus the completion. Flag `--max-model-len`.",
        json_schema_extra={"default_text": "the checkpoint's; `vllm`: 32768; `remote`: the upstream's"},
    )
    default_max_tokens: int = Field(
        default=512,
        ge=1,
        description="Completion limit when a request sets none (the `vllm` and `remote` engines send it upstream; "
        "current vLLM caps it at the context left).",
    )
    warmup: bool = Field(default=True, description="Run one generation, with an image, before reporting ready.")
    stall_timeout_s: float = Field(
        default=60.0,
        ge=0,
        description="Requests are waiting on the engine and none has had a token for this many seconds: the "
        "engine is stalled, `/health/ready` and new requests get 503 until tokens flow again; `0` disables the "
        "check. Set it above the longest prefill you expect.",
    )


class RemoteEngineSettings(BaseSettings):
    """The `remote` engine: existing OpenAI-compatible servers (vLLM, SGLang) that vlserve sends requests to."""

    upstream: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="OpenAI base URLs of the upstream servers, comma-separated (`http://vllm:8000/v1`; `/v1` may "
        "be left out); needed by `VLSERVE_ENGINE=remote`, refused with any other engine. Flag `--upstream`.",
    )
    upstream_model: str | None = Field(
        default=None,
        description="Model name sent upstream; clients use `VLSERVE_SERVED_MODEL_NAME` if set, else this. "
        "Flag `--upstream-model`.",
        json_schema_extra={"default_text": "the first model the upstream lists"},
    )
    upstream_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer token sent to every upstream; a secret, never printed. Flag `--upstream-api-key`.",
    )
    upstream_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to connect to an upstream (a failed connect is retried on another)."
    )
    upstream_first_token_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds from sending a request to its first token (`504 upstream_timeout`).",
    )
    upstream_timeout: float = Field(default=900.0, gt=0, description="Seconds for a whole upstream request.")
    upstream_health_interval: float = Field(
        default=5.0, gt=0, description="Seconds between upstream health checks (every second while none is healthy)."
    )
    upstream_max_inflight: int = Field(
        default=256, ge=1, description="Requests in flight to the upstreams before new ones get `429 Retry-After`."
    )
    upstream_image_format: Literal["auto", "png", "jpeg"] = Field(
        default="auto",
        description="How a resized image is sent upstream: `auto` (JPEG at quality 92 when the client sent a JPEG, "
        "lossless PNG otherwise), `png` or `jpeg` (quality 92); an image that needs no resizing goes as the "
        "client's own bytes.",
    )

    @field_validator("upstream", mode="before")
    @classmethod
    def _split_upstreams(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("upstream")
    @classmethod
    def _check_upstreams(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream URLs must start with http:// or https://, got {url[:40]!r}")
        return value


class VllmEngineSettings(BaseSettings):
    """The `vllm` engine: a `vllm serve` child that vlserve starts, supervises and sends requests to."""

    vllm_executable: str = Field(
        default="vllm", description="The command the managed engine starts: a name on `PATH` or a path."
    )
    vllm_tensor_parallel_size: int = Field(
        default=1, ge=1, description="GPUs the model is split over. Flag `--tensor-parallel-size`."
    )
    vllm_expert_parallel: bool = Field(
        default=False,
        description="Expert parallelism for a MoE model: its experts spread over the GPUs. Flag `--expert-parallel`.",
    )
    vllm_gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Share of GPU memory vLLM takes. Flag `--gpu-memory-utilization`.",
    )
    vllm_quantization: str | None = Field(
        default=None,
        description="vLLM's `--quantization` for BF16 weights quantized as vLLM loads them, in vLLM 0.32's names: "
        "`fp8_per_tensor`, `fp8_per_block`, … (`fp8` is passed as `fp8_per_tensor`); leave it unset for an FP8 "
        "checkpoint, which carries its own. Flag `--quantization`.",
        json_schema_extra={"default_text": "unset: the checkpoint's own"},
    )
    vllm_args: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More `vllm serve` arguments, one shell-quoted string, placed last (they win); their "
        "`--limit-mm-per-prompt` / `--mm-processor-kwargs` keys merge into vlserve's; `--host`, `--port`, `--uds`, "
        "`--api-key`, `--served-model-name`, `--model` and `--config` are refused in any spelling vLLM reads "
        "(`--api_key`, `--hos`). Flag `--vllm-args`.",
    )

    @field_validator("vllm_args", mode="before")
    @classmethod
    def _split_vllm_args(cls, value: object) -> object:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("vllm_args")
    @classmethod
    def _keep_vllm_private(cls, value: list[str]) -> list[str]:
        if value:  # imported here: the engine package is heavy, and only the vllm engine has extra arguments
            from vlserve.engine.vllm.extra_args import read_extra_args

            read_extra_args(value)  # options vlserve owns, in any spelling vLLM reads, and bad JSON values
        return value

    @field_validator("vllm_quantization")
    @classmethod
    def _check_quantization(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # the checkpoint's own
        from vlserve.engine.vllm.quantization import check_quantization

        return check_quantization(value)
