"""Settings that bound what one request may cost: its size, its images and videos, the URLs fetched for it."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from vlserve.settings.lists import split_list


class RequestLimits(BaseSettings):
    """Limits on a request as a whole, checked before any work is done on it."""

    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="JSON request bodies, counted as they arrive (413)."
    )
    max_json_depth: int = Field(
        default=32,
        ge=4,
        le=64,
        description="Nesting of any JSON the server parses: each free-form field of a request, a schema, a "
        "documents `json_schema`, the model's JSON answers (4 to 64; 400 `json_too_deep`).",
    )
    max_messages: int = Field(default=1024, ge=1, description="Messages per chat request (400).")
    max_prompt_chars: int = Field(
        default=1_000_000, ge=1, description="Characters of text per request, checked before tokenising (400)."
    )
    max_request_pixels: int = Field(
        default=100_000_000,
        ge=1024,
        description="Width × height of all images of one request (a document job's image files included) and of "
        "every video frame it keeps, read from their headers before any is decoded.",
    )
    max_form_fields: int = Field(default=256, ge=1, description="Fields and files per multipart request.")


class ImageSettings(BaseSettings):
    """Limits read from an image's header before it is decoded, the pixel budget it is resized to, and how many
    images are decoded at once. One visual token covers 32 × 32 pixels (patch 16, merge 2): the pixel budget
    decides what an image costs in context and compute."""

    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="Encoded size limit per image.")
    max_image_pixels: int = Field(
        default=40_000_000,
        ge=1024,
        description="Width × height limit per image, read from the header before decoding.",
    )
    max_images_per_request: int = Field(default=8, ge=1, description="Images per request.")
    min_pixels: int | None = Field(
        default=None,
        ge=32 * 32,
        description="Smallest pixel budget an image is resized to (Qwen3-VL's own: 65536 = 64 visual tokens); at "
        "most `VLSERVE_MAX_PIXELS`.",
        json_schema_extra={"default_text": "the checkpoint's (`preprocessor_config.json`)"},
    )
    max_pixels: int | None = Field(
        default=None,
        ge=32 * 32,
        description="Largest pixel budget an image is resized to.",
        json_schema_extra={"default_text": "the checkpoint's, at most `1310720` (1280 visual tokens)"},
    )
    decode_budget_pixels: int | None = Field(
        default=None,
        ge=0,
        description="Width × height of the images being decoded at once, server-wide (every endpoint and the "
        "document worker; each image counted from its header; a cache hit decodes nothing); at least "
        "`VLSERVE_MAX_IMAGE_PIXELS`; `0`: no limit.",
        json_schema_extra={
            "default_text": "unset: sized at start, the smaller of a quarter of the available memory (the "
            "machine's or the cgroup's) over 8 bytes a pixel and one `VLSERVE_MAX_IMAGE_PIXELS` image per usable "
            "CPU, never below one such image"
        },
    )
    decode_budget_wait_s: float = Field(
        default=10.0,
        ge=0,
        description="Seconds an image waits, first come first served, for room in the decode budget before "
        "`503 decode_budget_exhausted` with `Retry-After`.",
    )

    @model_validator(mode="after")
    def _check_pixels(self) -> ImageSettings:
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        if self.decode_budget_pixels and self.decode_budget_pixels < self.max_image_pixels:
            raise ValueError(
                f"decode_budget_pixels ({self.decode_budget_pixels}) must be at least max_image_pixels "
                f"({self.max_image_pixels}), so that every image allowed can be decoded; 0: no limit"
            )
        return self


class VideoSettings(BaseSettings):
    """Videos, decoded with PyAV: the container header is checked before any frame is decoded."""

    video: bool = Field(
        default=True,
        description="Take videos (`video_url` parts, `video_file` uploads, `vlserve ask clip.mp4`); `false`: a video "
        "is refused with `400 video_disabled` naming this setting.",
    )
    video_fps: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description="Frames sampled per second of video (by the frames' own timestamps, so a variable frame rate "
        "is sampled by time).",
    )
    video_max_frames: int = Field(
        default=64,
        ge=2,
        le=768,
        description="Frames kept per video, rounded down to even (Qwen3-VL takes frames in pairs; an odd count is "
        "padded with the last frame); a clip longer than this at `VLSERVE_VIDEO_FPS` is sampled evenly over its "
        "whole length instead, at a lower rate.",
    )
    video_max_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Longest video, from its container header before any frame is decoded (and from the frames' "
        "timestamps while decoding); `413 video_too_long`.",
    )
    video_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Encoded size limit per video (a `data:` URL also counts against `VLSERVE_MAX_BODY_BYTES`).",
    )
    video_max_pixels: int = Field(
        default=3840 * 2160,
        ge=1024,
        description="Width × height of a video's frames, from its header; `400 video_too_large`.",
        json_schema_extra={"default_text": "`8294400` (3840 × 2160)"},
    )
    video_max_decode_pixels: int = Field(
        default=10_000_000_000,
        ge=1024,
        description="Pixels one video may decode, every frame the decoder produces at full size: checked from the "
        "header's frame count before decoding, then counted while decoding (decoding stops there); "
        "`413 video_too_large`. Bounds the CPU a video costs.",
        json_schema_extra={"default_text": "`10000000000` (about 5 minutes of 1080p at 30 fps)"},
    )
    max_videos_per_request: int = Field(
        default=2,
        ge=1,
        description="Videos per request (images are counted apart by `VLSERVE_MAX_IMAGES_PER_REQUEST`; the pixel "
        "budget `VLSERVE_MAX_REQUEST_PIXELS` counts images and every kept video frame together).",
    )


class UrlFetchSettings(BaseSettings):
    """Image URLs the server fetches (and document webhooks it calls): public (global) addresses only, unless
    allowed here."""

    url_fetch_timeout: float = Field(default=10.0, gt=0, description="Seconds for one image URL, redirects included.")
    url_max_redirects: int = Field(default=3, ge=0, description="Redirects followed per image URL.")
    url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts or CIDR networks that image URLs and webhooks may reach although they are not public "
        "addresses, comma-separated or a JSON list "
        '(`10.0.0.0/8,images.internal` or `["10.0.0.0/8", "images.internal"]`).',
    )

    @field_validator("url_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        return split_list(value)

    @field_validator("url_allowlist")
    @classmethod
    def _check_allowlist(cls, value: list[str]) -> list[str]:
        for item in value:
            if "/" in item:
                ipaddress.ip_network(item, strict=False)  # raises ValueError: a clear start-up error
        return value
