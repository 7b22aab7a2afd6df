"""All server settings in one typed class: environment variables ``VLSERVE_*``, validated at start.

Each concern's settings live in their own mixin (server, engines, limits, security, cache, observability,
documents); ``Settings`` combines them with the rules across concerns. ``SETTING_GROUPS`` orders them for the
configuration reference (``vlserve.settings.reference``).
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from pydantic import PrivateAttr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vlserve.media.limits import ImageLimits, VideoLimits
from vlserve.settings.cache import CacheSettings
from vlserve.settings.documents import DocumentSettings
from vlserve.settings.engines import (
    BUNDLED_MODEL_DIR,
    DEMO_MODEL_NAME,
    EngineSettings,
    RemoteEngineSettings,
    SchedulingSettings,
    VllmEngineSettings,
    default_data_dir,
)
from vlserve.settings.limits import ImageSettings, RequestLimits, UrlFetchSettings, VideoSettings
from vlserve.settings.observability import ObservabilitySettings
from vlserve.settings.security import ADMIN_KEY_FORM, SecuritySettings
from vlserve.settings.server import ServerSettings, is_loopback_host

__all__ = [
    "ADMIN_KEY_FORM",
    "BUNDLED_MODEL_DIR",
    "DEMO_MODEL_NAME",
    "SETTING_GROUPS",
    "Settings",
    "default_data_dir",
    "is_loopback_host",
]


# Bases are listed last group first: pydantic orders the fields from the last base to the first, so the fields
# of Settings come in the order of SETTING_GROUPS below.
class Settings(
    DocumentSettings,
    ObservabilitySettings,
    CacheSettings,
    UrlFetchSettings,
    VideoSettings,
    ImageSettings,
    RequestLimits,
    SecuritySettings,
    ServerSettings,
    VllmEngineSettings,
    RemoteEngineSettings,
    SchedulingSettings,
    EngineSettings,
):
    """Every knob of `vlserve serve`. Each field is also the env var ``VLSERVE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VLSERVE_", extra="ignore")
    _worker_suffix: str = PrivateAttr(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(4)}")

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


# The settings by concern, in the order the configuration reference shows them; together, every field once.
SETTING_GROUPS: tuple[tuple[str, type[BaseSettings]], ...] = (
    ("Model and engine", EngineSettings),
    ("Scheduling and batching", SchedulingSettings),
    ("Remote engine", RemoteEngineSettings),
    ("Managed vLLM engine", VllmEngineSettings),
    ("Server", ServerSettings),
    ("API keys, quotas and audit", SecuritySettings),
    ("Request limits", RequestLimits),
    ("Images", ImageSettings),
    ("Video", VideoSettings),
    ("Image URLs", UrlFetchSettings),
    ("Response and image caches", CacheSettings),
    ("Logs, metrics and traces", ObservabilitySettings),
    ("Database and document jobs", DocumentSettings),
)
