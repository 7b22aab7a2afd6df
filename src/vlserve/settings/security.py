"""Settings of API keys, per-key limits and the audit log."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

ADMIN_KEY_FORM = re.compile(r"vlsk_[A-Za-z0-9_-]{32,95}")  # the form of the keys vlserve makes


class SecuritySettings(BaseSettings):
    """Who may call the server, how much each API key may use, and what is kept of each request."""

    require_auth: bool | None = Field(
        default=None,
        description="Every route but `/health/*` needs `Authorization: Bearer <key>`.",
        json_schema_extra={"default_text": "unset: on when `VLSERVE_HOST` is not a loopback address"},
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="A deployment's first key, given as a secret (`vlsk_` and 32 to 95 URL-safe characters; "
        "`vlserve keys secret` prints one): stored at start-up with every scope unless a key with this secret "
        "exists; revoking it keeps it revoked (set a new secret). For a first key where `vlserve keys create` "
        "cannot run first (Kubernetes, compose).",
    )
    allow_public_without_auth: bool = Field(
        default=False,
        description="Needed, with `VLSERVE_REQUIRE_AUTH=0`, to listen on a non-loopback address with no "
        "authentication.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis (`redis://host:6379/0`) holding the per-key limits and the response cache, shared by "
        "every server using it; unreachable at start: one line, exit 2.",
        json_schema_extra={"default_text": "unset: limits and cached answers kept in this process"},
    )
    redis_prefix: str = Field(
        default="vlserve:ratelimit:",
        min_length=1,
        description="Prefix of the limit keys in Redis (cached answers: this + `cache:`); deployments sharing one "
        "Redis but not their limits need different prefixes.",
    )
    default_requests_per_minute: int = Field(
        default=0,
        ge=0,
        description="Requests a minute per API key, unless the key sets its own; `0`: no limit.",
        json_schema_extra={"default_text": "`0` (none)"},
    )
    default_concurrent_requests: int = Field(
        default=0,
        ge=0,
        description="Requests in flight at once per API key, unless the key sets its own; `0`: no limit.",
        json_schema_extra={"default_text": "`0` (none)"},
    )
    default_tokens_per_day: int = Field(
        default=0,
        ge=0,
        description="Tokens (prompt plus completion, UTC day) per API key, unless the key sets its own; `0`: no limit.",
        json_schema_extra={"default_text": "`0` (none)"},
    )
    audit: bool = Field(default=True, description="Keep one audit record per API request, in the database.")
    audit_content: bool = Field(
        default=False,
        description="Also keep prompt text and image bytes in audit records (off: only the images' hashes).",
    )
    audit_retention_days: float = Field(
        default=90.0, gt=0, description="Audit records are deleted this many days after they are written."
    )

    @field_validator("admin_key")
    @classmethod
    def _check_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not ADMIN_KEY_FORM.fullmatch(value.get_secret_value()):
            raise ValueError(
                "must be vlsk_ followed by 32 to 95 URL-safe characters (A-Z a-z 0-9 - _); "
                "`vlserve keys secret` prints one"
            )
        return value
