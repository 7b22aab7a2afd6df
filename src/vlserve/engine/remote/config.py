"""What the remote engine needs to know, from settings (remote mode) or from the managed vLLM engine."""

from __future__ import annotations

from dataclasses import dataclass

from vlserve.engine.checkpoint_files import image_budget
from vlserve.engine.remote.media import ImageFormat
from vlserve.media.resize import ImageBudget, budget_from_processor
from vlserve.settings import Settings


@dataclass(frozen=True)
class RemoteConfig:
    upstreams: tuple[str, ...]
    budget: ImageBudget  # images are resized into it before they are sent
    max_images: int
    model: str | None = None  # the upstream's name for the model; None: the first it lists
    served_name: str | None = None  # the name clients use; None: the upstream's
    api_key: str | None = None
    max_model_len: int | None = None  # None: the upstream's (vLLM lists it)
    default_max_tokens: int | None = None  # sent when a request sets no limit; None: the upstream's default
    connect_timeout: float = 5.0
    first_token_timeout: float = 300.0
    timeout: float = 900.0
    health_interval: float = 5.0
    max_inflight: int = 256
    image_format: ImageFormat = "auto"
    warmup: bool = True
    name: str = "remote"  # the engine's name in error messages

    @classmethod
    def from_settings(cls, s: Settings, **overrides: object) -> RemoteConfig:
        """Remote mode: the pixel budget of ``--model DIR`` when given (a local copy of the checkpoint's
        configuration), else Qwen3-VL's geometry (32 px per visual token) within the configured budget."""
        if s.model is not None:
            budget = image_budget(s.model_dir(), min_pixels=s.min_pixels, max_pixels=s.max_pixels)
        else:
            budget = budget_from_processor({}, min_pixels=s.min_pixels, max_pixels=s.max_pixels)
        values: dict = {
            "upstreams": tuple(s.upstream),
            "budget": budget,
            "max_images": s.max_images_per_request,
            "model": s.upstream_model,
            "served_name": s.served_model_name,
            "api_key": None if s.upstream_api_key is None else s.upstream_api_key.get_secret_value(),
            "max_model_len": s.max_model_len,
            "default_max_tokens": s.default_max_tokens,
            "connect_timeout": s.upstream_connect_timeout,
            "first_token_timeout": s.upstream_first_token_timeout,
            "timeout": s.upstream_timeout,
            "health_interval": s.upstream_health_interval,
            "max_inflight": s.upstream_max_inflight,
            "image_format": s.upstream_image_format,
            "warmup": s.warmup,
        }
        return cls(**{**values, **overrides})
