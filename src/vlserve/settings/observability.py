"""Settings of the server's logs, its Prometheus metrics and its OpenTelemetry traces."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings


class ObservabilitySettings(BaseSettings):
    """What the server tells about itself: log lines, metrics and trace spans."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe log lines written: `debug`, `info`, `warning` or `error`."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text` (readable lines) or `json` (one JSON object per line: time, level, logger, message, "
        "trace_id; one access line per request with method, path, status, latency_ms, key_id, model, tokens, cache).",
    )
    access_log: bool = Field(
        default=True,
        description="Write one access line per HTTP request; `false`: none (errors and other lines are still logged).",
    )
    metrics: bool = Field(
        default=True,
        description="Serve Prometheus metrics at `/metrics`; `false`: no `/metrics` route (404) and no per-request "
        "metrics work.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector that gets one span per request (`http://otel-collector:4318`; a URL "
        "without a path gets `/v1/traces`, one with a path is used as it is); needs `pip install 'vlserve[otel]'`.",
        json_schema_extra={"default_text": "unset: no tracing"},
    )
    otlp_headers: SecretStr | None = Field(
        default=None,
        description="Headers sent with every export, `name=value` pairs separated by commas, values "
        "percent-encoded (`authorization=Bearer%20t0ken,x-tenant=a`); a secret, never logged.",
    )
    otlp_service_name: str = Field(default="vlserve", min_length=1, description="`service.name` of the exported spans.")

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
