"""All server settings in one typed class: environment variables ``VLSERVE_*``, validated at start."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vlserve.media.limits import ImageLimits

DEMO_MODEL_NAME = "vlserve-demo-random"
# The trained chart-reading demo model shipped inside the package (`vlserve demo train` makes it).
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "demo" / "checkpoint" / "vlserve-demo"


def default_data_dir() -> Path:
    return Path.home() / ".cache" / "vlserve"


class Settings(BaseSettings):
    """Every knob of `vlserve serve`. Each field is also the env var ``VLSERVE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VLSERVE_", extra="ignore")

    # --- model and engine -------------------------------------------------------------------
    model: Path | None = Field(
        default=None,
        description="Local checkpoint directory (Qwen3-VL, Qwen3-VL-MoE or Qwen2.5-VL). "
        "Unset: the bundled chart-reading demo model.",
    )
    served_model_name: str | None = Field(
        default=None, description="Model id clients send; defaults to the checkpoint directory name."
    )
    engine: Literal["transformers"] = Field(default="transformers", description="Inference backend.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when present.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto: bfloat16 on CUDA, float32 on CPU."
    )
    data_dir: Path = Field(default_factory=default_data_dir, description="Where built demo models live.")

    # --- scheduling --------------------------------------------------------------------------
    max_batch_size: int = Field(default=4, ge=1, le=256, description="Requests decoded together per step.")
    max_queue_size: int = Field(default=64, ge=1, description="Waiting requests before 429 Retry-After.")
    batch_wait_ms: float = Field(
        default=5.0, ge=0, description="How long the scheduler waits to fill a batch once one request is in."
    )
    max_model_len: int | None = Field(
        default=None, ge=16, description="Context limit (prompt + completion); default from the checkpoint."
    )
    default_max_tokens: int = Field(default=512, ge=1, description="Completion limit when a request sets none.")
    warmup: bool = Field(default=True, description="Run one generation (with an image) before ready.")

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

    # --- image URLs --------------------------------------------------------------------------
    url_fetch_timeout: float = Field(default=10.0, gt=0, description="Seconds for one image URL, all redirects.")
    url_max_redirects: int = Field(default=3, ge=0)
    url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts or CIDR networks fetched even though they are not global addresses "
        '(JSON list, e.g. ["10.0.0.0/8", "images.internal"]).',
    )

    # --- HTTP ----------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Listen address.")
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("url_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
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
        return self

    def model_dir(self) -> Path:
        """The configured checkpoint; unset: the bundled trained demo, else the random one (built on use)."""
        if self.model is not None:
            return self.model
        if (BUNDLED_MODEL_DIR / "config.json").is_file():
            return BUNDLED_MODEL_DIR
        return self.random_demo_dir()

    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    def random_demo_dir(self) -> Path:
        return self.data_dir / "models" / DEMO_MODEL_NAME

    def model_name(self) -> str:
        return self.served_model_name or self.model_dir().name
