"""Settings of the response cache and of the decoded-image cache."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings


class CacheSettings(BaseSettings):
    """The response cache answers a repeated deterministic request (temperature 0, top_k 1 or a seed) without the
    engine, in this process or in Redis (`VLSERVE_REDIS_URL`); the image cache keeps decoded images for reuse."""

    cache: bool = Field(
        default=True,
        description="Cache the answers of deterministic chat and text completions (temperature 0, top_k 1 or a seed).",
    )
    cache_scope: Literal["key", "shared"] = Field(
        default="key",
        description="`key`: a cached answer is seen only by the API key that made it; `shared`: by every key (a "
        "caller can then learn by timing that another asked the same).",
    )
    cache_ttl_s: float = Field(
        default=3600.0, gt=0, description="Seconds a cached answer is kept, in this process or in Redis."
    )
    cache_max_entries: int = Field(
        default=10_000, ge=1, description="In-process cache: answers kept (least recently used evicted first)."
    )
    cache_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="In-process cache: bytes of stored answers kept."
    )
    image_cache_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="Decoded images kept for reuse, in bytes of memory (least recently used evicted first); `0`: "
        "no image cache.",
    )
    image_cache_ttl_s: float = Field(
        default=300.0, gt=0, description="Seconds a decoded image is kept for reuse, from its decode."
    )
