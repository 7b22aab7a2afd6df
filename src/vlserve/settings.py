"""All server settings in one typed class: environment variables ``VLSERVE_*``, validated at start."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shlex
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vlserve.media.limits import ImageLimits, VideoLimits

DEMO_MODEL_NAME = "vlserve-demo-random"
ADMIN_KEY_FORM = re.compile(r"vlsk_[A-Za-z0-9_-]{32,95}")  # the form of the keys vlserve makes
# The trained chart-reading demo model shipped inside the package (`vlserve demo train` makes it).
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "demo" / "checkpoint" / "vlserve-demo"


def is_loopback_host(host: str) -> bool:
    """Whether a listen address is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve to anything


def default_data_dir() -> Path:
    return Path.home() / ".cache" / "vlserve"


class Settings(BaseSettings):
    """Every knob of `vlserve serve`. Each field is also the env var ``VLSERVE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VLSERVE_", extra="ignore")
    _worker_suffix: str = PrivateAttr(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(4)}")

    # --- model and engine -------------------------------------------------------------------
    model: Path | None = Field(
        default=None,
        description="Local checkpoint directory (Qwen3-VL, Qwen3-VL-MoE or Qwen2.5-VL), or a model pulled with "
        "vlserve pull, by its catalogue name (qwen3-vl-2b) or hub id. Unset: the bundled chart-reading demo model.",
    )
    served_model_name: str | None = Field(
        default=None, description="Model id clients send; defaults to the checkpoint directory name."
    )
    engine: Literal["transformers", "vllm", "remote"] = Field(
        default="transformers",
        description="Inference backend: transformers (in-process), vllm (a vLLM child vlserve starts and "
        "supervises) or remote (an existing OpenAI-compatible vLLM / SGLang fleet).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when present.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="auto: bfloat16 on CUDA; on a CPU, bfloat16 for a bfloat16 checkpoint where the CPU computes it "
        "natively (AVX-512 BF16, AMX, Arm BF16), else float32.",
    )
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="CPU threads for the transformers engine; default: torch's choice capped by the CPU affinity "
        "and the container's CPU quota.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir, description="Where pulled models (models/NAME) and built demo models live."
    )

    # --- scheduling --------------------------------------------------------------------------
    max_batch_size: int = Field(
        default=8, ge=1, le=256, description="Requests decoded together per step (continuous batching)."
    )
    max_queue_size: int = Field(default=64, ge=1, description="Waiting requests before 429 Retry-After.")
    batch_wait_ms: float = Field(
        default=5.0, ge=0, description="How long the scheduler waits to fill a batch once one request is in."
    )
    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="Context limit (prompt + completion); default: the checkpoint's (transformers), "
        "32768 (vllm), the upstream's (remote).",
    )
    default_max_tokens: int = Field(default=512, ge=1, description="Completion limit when a request sets none.")
    warmup: bool = Field(default=True, description="Run one generation (with an image) before ready.")
    stall_timeout_s: float = Field(
        default=60.0,
        ge=0,
        description="Requests wait on the engine and no token has come out for this long: the engine is stalled "
        "(not ready, 503) until tokens flow again; 0 disables the check.",
    )

    # --- remote engine (an existing OpenAI-compatible fleet) ----------------------------------
    upstream: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="OpenAI base URLs of the upstream servers, comma-separated (http://vllm:8000/v1; /v1 optional).",
    )
    upstream_model: str | None = Field(
        default=None, description="Model name sent upstream; default: the first model the upstream lists."
    )
    upstream_api_key: SecretStr | None = Field(default=None, description="Bearer token for the upstream.")
    upstream_connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect to an upstream.")
    upstream_first_token_timeout: float = Field(
        default=300.0, gt=0, description="Seconds from sending a request to its first token."
    )
    upstream_timeout: float = Field(default=900.0, gt=0, description="Seconds for a whole upstream request.")
    upstream_health_interval: float = Field(default=5.0, gt=0, description="Seconds between upstream health checks.")
    upstream_max_inflight: int = Field(
        default=256, ge=1, description="Requests in flight to the upstreams before 429 Retry-After."
    )
    upstream_image_format: Literal["auto", "png", "jpeg"] = Field(
        default="auto",
        description="How resized images are sent upstream: auto (JPEG for JPEG input, else lossless PNG), "
        "png or jpeg (quality 92).",
    )

    # --- vllm engine (a vLLM child supervised by vlserve) ---------------------------------------
    vllm_executable: str = Field(default="vllm", description="The vllm command (a name on PATH or a path).")
    vllm_tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs the model is split over.")
    vllm_expert_parallel: bool = Field(default=False, description="Spread MoE experts over the GPUs (EP).")
    vllm_gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1, description="Share of GPU memory vLLM takes.")
    vllm_quantization: str | None = Field(
        default=None,
        description="vLLM --quantization for BF16 weights quantized as vLLM loads them: fp8_per_tensor, "
        "fp8_per_block, … (vLLM 0.32's names; fp8 is passed as fp8_per_tensor). Unset: the checkpoint's own "
        "(an FP8 checkpoint carries it).",
    )
    vllm_args: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra arguments for vllm serve, as a shell-quoted string."
    )

    # --- images ------------------------------------------------------------------------------
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="Per image, encoded bytes.")
    max_image_pixels: int = Field(
        default=40_000_000, ge=1024, description="Width x height limit, read from the header before decoding."
    )
    max_images_per_request: int = Field(default=8, ge=1)
    min_pixels: int | None = Field(
        default=None, ge=32 * 32, description="Smallest pixel budget per image; unset: the checkpoint's own."
    )
    max_pixels: int | None = Field(
        default=None,
        ge=32 * 32,
        description="Largest pixel budget per image; unset: the checkpoint's own, at most 1280 visual tokens.",
    )
    image_cache_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=0, description="Decoded images kept for reuse, bytes in memory; 0: off."
    )
    image_cache_ttl_s: float = Field(default=300.0, gt=0, description="Seconds a decoded image is kept for reuse.")
    decode_budget_pixels: int | None = Field(
        default=None,
        ge=0,
        description="Pixels of images being decoded at once, server-wide (each image counted from its header); "
        "at least max_image_pixels; unset: a quarter of the memory available at start over 8 bytes a pixel, "
        "at most one max_image_pixels image per CPU; 0: no limit.",
    )
    decode_budget_wait_s: float = Field(
        default=10.0, ge=0, description="Seconds an image waits for its turn to decode before 503 Retry-After."
    )

    # --- video (decoded with PyAV; its header checked before any frame is) ---------------------------------
    video: bool = Field(
        default=True, description="Take videos (video_url parts, video_file uploads); false: 400 naming VLSERVE_VIDEO."
    )
    video_fps: float = Field(default=2.0, gt=0, le=30, description="Frames sampled per second of video.")
    video_max_frames: int = Field(
        default=64,
        ge=2,
        le=768,
        description="Frames kept per video (rounded down to even: Qwen3-VL takes them in pairs); a longer clip is "
        "sampled evenly over its whole length instead, at a lower rate.",
    )
    video_max_seconds: float = Field(
        default=600.0, gt=0, description="Longest video, from its header (and its frames' timestamps)."
    )
    video_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="Per video, encoded bytes.")
    video_max_pixels: int = Field(
        default=3840 * 2160, ge=1024, description="Width x height of a video's frames, from its header."
    )
    video_max_decode_pixels: int = Field(
        default=10_000_000_000,
        ge=1024,
        description="Pixels one video may decode, every frame the decoder produces at full size (from the header's "
        "frame count first, then counted while decoding): bounds the CPU a video costs (10 G: ~5 min of 1080p30).",
    )
    max_videos_per_request: int = Field(default=2, ge=1, description="Videos per request (each counts its frames "
                                        "in VLSERVE_MAX_REQUEST_PIXELS with the images).")  # fmt: skip

    # --- image URLs --------------------------------------------------------------------------
    url_fetch_timeout: float = Field(default=10.0, gt=0, description="Seconds for one image URL, all redirects.")
    url_max_redirects: int = Field(default=3, ge=0)
    url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts or CIDR networks fetched even though they are not global addresses "
        '(JSON list, e.g. ["10.0.0.0/8", "images.internal"]).',
    )

    # --- document jobs -----------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the job database; unset: a SQLite file in the data directory. "
        "PostgreSQL: postgresql+psycopg://user@host/db (several servers may share it).",
    )
    document_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, description="Upload limit per job, bytes.")
    document_max_pages: int = Field(default=500, ge=1, description="Pages per job, after the page range.")
    document_max_files: int = Field(default=100, ge=1, description="Image files per job.")
    document_longest_side: int = Field(default=1288, ge=64, le=8192, description="Pages are rendered to this, px.")
    document_max_tokens: int = Field(default=2048, ge=1, description="Completion limit per page and attempt.")
    document_temperatures: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.5, 0.8],
        description="One attempt per temperature: a page cut off, not JSON or off-schema is retried at the next.",
    )
    document_concurrency: int = Field(default=0, ge=0, description="Pages in flight per server (0: the batch size).")
    pdf_workers: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Processes rendering document PDF pages side by side (a file that crashes the renderer fails "
        "its page, not the server); 0: in the server process, one page at a time.",
    )
    document_keep_files: bool = Field(
        default=False, description="Keep a job's uploaded files in the database after it ends (results are kept)."
    )
    document_worker: bool = Field(default=True, description="Process document pages in this server.")
    document_lease_s: float = Field(
        default=30.0, gt=0, description="A page held by a worker that stops renewing is taken over after this."
    )
    document_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often an idle worker looks for pages, and a busy one checks its pages' jobs for cancellation.",
    )
    worker_id: str | None = Field(
        default=None,
        description="Readable prefix of this server's name in the job table (default host:port); each process "
        "adds its own suffix, so two processes never share a name.",
    )
    webhook_secret: str | None = Field(
        default=None, description="HMAC key for webhook signatures; unset: a random secret per job, returned once."
    )
    webhook_attempts: int = Field(default=5, ge=1, le=20, description="Deliveries tried per webhook.")
    webhook_timeout: float = Field(default=10.0, gt=0, description="Seconds per webhook delivery attempt.")

    document_retention_days: float = Field(
        default=30.0, gt=0, description="Ended jobs and their results are deleted this many days after they end."
    )

    # --- HTTP ----------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Listen address.")
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Server log lines: text (readable, one line each) or json (one JSON object per line, with the "
        "trace id; each request adds an access line with its status, latency, key, model and tokens).",
    )
    docs: bool = Field(default=True, description="Serve Swagger UI at /docs and the schema at /openapi.json.")
    playground: bool = Field(
        default=True,
        description="Serve the browser playground at / (its files from the package; nothing loaded from elsewhere).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Browser origins allowed to call the API (comma-separated or JSON list; "*" for any); '
        "unset: no CORS headers, browsers on other origins are refused.",
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long in-flight requests may run before they are ended."
    )

    # --- observability: metrics, access log, OpenTelemetry traces ------------------------------------
    metrics: bool = Field(default=True, description="Serve Prometheus metrics at /metrics (off: no route, no cost).")
    access_log: bool = Field(default=True, description="Write one access line per HTTP request.")
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP endpoint spans are exported to (http://otel-collector:4318, /v1/traces added to a "
        "URL without a path); unset: no tracing. Needs pip install 'vlserve[otel]'.",
    )
    otlp_headers: SecretStr | None = Field(
        default=None, description='Headers sent with every export, e.g. "authorization=Bearer x,tenant=a".'
    )
    otlp_service_name: str = Field(default="vlserve", min_length=1, description="service.name of exported spans.")

    # --- security: API keys, quotas, audit ---------------------------------------------------------
    require_auth: bool | None = Field(
        default=None,
        description="Every route but /health/* needs an API key; unset: on when the server listens on a "
        "non-loopback address.",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="An admin API key given by the deployment (vlsk_ and 32 to 95 URL-safe characters; "
        "`vlserve keys secret` prints one): stored at start-up, with every scope, unless a key with this "
        "secret exists. For a first key where `vlserve keys create` cannot run first (Kubernetes, compose).",
    )
    allow_public_without_auth: bool = Field(
        default=False,
        description="Needed, with require_auth=0, to listen on a non-loopback address with no authentication.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL (redis://host:6379/0) for rate limits shared by several servers."
    )
    redis_prefix: str = Field(
        default="vlserve:ratelimit:",
        min_length=1,
        description="Prefix of the rate-limit keys in Redis; deployments sharing one Redis but not their limits "
        "need different ones.",
    )
    default_requests_per_minute: int = Field(
        default=0, ge=0, description="Per key, unless the key sets its own; 0: none."
    )
    default_concurrent_requests: int = Field(
        default=0, ge=0, description="Per key, unless the key sets its own; 0: none."
    )
    default_tokens_per_day: int = Field(default=0, ge=0, description="Per key, unless the key sets its own; 0: none.")
    audit: bool = Field(default=True, description="Keep one audit record per API request in the database.")
    audit_content: bool = Field(
        default=False, description="Also keep prompt text and image bytes in audit records (off: hashes only)."
    )
    audit_retention_days: float = Field(default=90.0, gt=0, description="Audit records are deleted after this.")

    # --- response cache (deterministic requests: temperature 0, top_k 1 or a seed) --------------------
    cache: bool = Field(default=True, description="Cache the answers of deterministic chat and text completions.")
    cache_scope: Literal["key", "shared"] = Field(
        default="key",
        description="key: an entry is seen only by the API key that made it; shared: by every key (a caller can "
        "then learn by timing that someone asked the same).",
    )
    cache_ttl_s: float = Field(default=3600.0, gt=0, description="Seconds a cached answer is kept (both backends).")
    cache_max_entries: int = Field(default=10_000, ge=1, description="In-process backend: answers kept.")
    cache_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="In-process backend: bytes of answers kept."
    )

    # --- request limits (checked before any work) -------------------------------------------------------
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="JSON request bodies, counted while they stream in."
    )
    max_json_depth: int = Field(
        default=32, ge=4, le=64, description="Nesting of any JSON parsed: request fields, schemas, answers."
    )
    max_messages: int = Field(default=1024, ge=1, description="Messages per chat request.")
    max_prompt_chars: int = Field(
        default=1_000_000, ge=1, description="Characters of text per request, checked before tokenising."
    )
    max_request_pixels: int = Field(
        default=100_000_000, ge=1024, description="Width x height of all images of one request, from their headers."
    )
    max_form_fields: int = Field(default=256, ge=1, description="Fields and files per multipart request.")
    max_connections: int = Field(default=1024, ge=1, description="Open connections before new ones get 503.")
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="Request line and headers, bytes.")
    header_timeout_s: float = Field(default=10.0, gt=0, description="Seconds for a client to send its headers.")
    read_timeout_s: float = Field(default=60.0, gt=0, description="Seconds a request body may stall between reads.")
    body_timeout_s: float = Field(
        default=120.0, gt=0, description="Seconds a request body has to arrive in full, however it trickles in."
    )
    keepalive_timeout_s: float = Field(default=5.0, gt=0, description="Idle keep-alive connections close after this.")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("url_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

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

    @field_validator("document_temperatures", mode="before")
    @classmethod
    def _split_temperatures(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v.strip()]
        return value

    @field_validator("document_temperatures")
    @classmethod
    def _check_temperatures(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 <= t <= 2 for t in value):
            raise ValueError("document_temperatures needs at least one temperature, each in 0..2")
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _check_otlp_endpoint(cls, value: str | None) -> str | None:
        from vlserve.observability.otlp_config import traces_url

        return None if value is None else traces_url(value)  # raises ValueError: a clear start-up error

    @field_validator("otlp_headers")
    @classmethod
    def _check_otlp_headers(cls, value: SecretStr | None) -> SecretStr | None:
        from vlserve.observability.otlp_config import parse_headers

        if value is not None:
            parse_headers(value.get_secret_value())
        return value

    @field_validator("admin_key")
    @classmethod
    def _check_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not ADMIN_KEY_FORM.fullmatch(value.get_secret_value()):
            raise ValueError(
                "must be vlsk_ followed by 32 to 95 URL-safe characters (A-Z a-z 0-9 - _); "
                "`vlserve keys secret` prints one"
            )
        return value

    @field_validator("url_allowlist")
    @classmethod
    def _check_allowlist(cls, value: list[str]) -> list[str]:
        for item in value:
            if "/" in item:
                ipaddress.ip_network(item, strict=False)  # raises ValueError: a clear start-up error
        return value

    @model_validator(mode="after")
    def _check_pixels(self) -> Settings:
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        if self.decode_budget_pixels and self.decode_budget_pixels < self.max_image_pixels:
            raise ValueError(
                f"decode_budget_pixels ({self.decode_budget_pixels}) must be at least max_image_pixels "
                f"({self.max_image_pixels}), so that every image allowed can be decoded; 0: no limit"
            )
        return self

    @model_validator(mode="after")
    def _check_engine(self) -> Settings:
        if self.engine == "remote" and not self.upstream:
            raise ValueError("the remote engine needs at least one upstream (--upstream URL or VLSERVE_UPSTREAM)")
        if self.engine != "remote" and self.upstream:
            raise ValueError("upstream is set, but the engine is not remote (add --engine remote)")
        return self

    @model_validator(mode="after")
    def _check_exposure(self) -> Settings:
        if self.require_auth is False and not is_loopback_host(self.host) and not self.allow_public_without_auth:
            raise ValueError(
                f"require_auth is off but the server listens on {self.host}, which other machines can reach; "
                "create a key (vlserve keys create NAME) and turn auth on, or set "
                "VLSERVE_ALLOW_PUBLIC_WITHOUT_AUTH=1 to serve anyone who reaches the port"
            )
        return self

    def auth_required(self) -> bool:
        """Whether requests need an API key: as configured, else whenever other machines can connect."""
        return self.require_auth if self.require_auth is not None else not is_loopback_host(self.host)

    def model_dir(self) -> Path:
        """The configured checkpoint (a directory, or a pulled model's name or hub id: its directory under the
        data dir); unset: the bundled trained demo, else the random one (built on use)."""
        if self.model is not None:
            from vlserve.models.local import checkpoint_dir

            return checkpoint_dir(self.model, self.data_dir)
        if (BUNDLED_MODEL_DIR / "config.json").is_file():
            return BUNDLED_MODEL_DIR
        return self.random_demo_dir()

    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'vlserve.db'}"

    def worker_name(self) -> str:
        """This process's name in the job table: the readable prefix, then the pid and a random suffix, fixed
        per Settings object. Unique per process, so a second server (same port, same VLSERVE_WORKER_ID, a
        container with the same pid) never mistakes another process's pages for its own."""
        prefix = (self.worker_id or f"{socket.gethostname()}:{self.port}")[:96]
        return f"{prefix}/{self._worker_suffix}"

    def page_concurrency(self) -> int:
        return self.document_concurrency or self.max_batch_size

    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    def video_limits(self) -> VideoLimits:
        return VideoLimits(
            enabled=self.video, max_bytes=self.video_max_bytes, max_seconds=self.video_max_seconds,
            max_pixels=self.video_max_pixels, max_decode_pixels=self.video_max_decode_pixels, fps=self.video_fps,
            max_frames=self.video_max_frames,
        )  # fmt: skip

    def random_demo_dir(self) -> Path:
        return self.data_dir / "models" / DEMO_MODEL_NAME

    def model_name(self) -> str:
        """The model id clients send (remote: the upstream's, unless served_model_name says otherwise)."""
        if self.served_model_name:
            return self.served_model_name
        if self.engine == "remote":
            return self.upstream_model or ""
        return self.model_dir().name
