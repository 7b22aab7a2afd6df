"""Settings of the HTTP server: where it listens, what it serves besides the API, its connections and timeouts."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from vlserve.settings.lists import split_list


def is_loopback_host(host: str) -> bool:
    """Whether a listen address is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve to anything


class ServerSettings(BaseSettings):
    """The HTTP server: its address, the pages it serves besides the API, its connections and timeouts."""

    host: str = Field(
        default="127.0.0.1",
        description="Listen address; any but a loopback address turns API keys on (see `VLSERVE_REQUIRE_AUTH`). "
        "Flag `--host`.",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port the server listens on. Flag `--port`.")
    docs: bool = Field(
        default=True,
        description="Serve Swagger UI at `/docs` (its scripts served by vlserve itself) and the schema at "
        "`/openapi.json`; with auth on, both need a key.",
    )
    playground: bool = Field(
        default=True,
        description="Serve the browser playground at `/` (its files under `/web/`, served from the package, nothing "
        "loaded from elsewhere); `false`: `/` answers 404 (401 with auth on).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API, comma-separated or a JSON list "
        "(`https://app.internal`; `*` for any); unset, browsers on other origins are refused.",
        json_schema_extra={"default_text": "empty: no CORS headers"},
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may run to finish; past it they are ended (a stream "
        "with an error event and `[DONE]`).",
    )
    max_connections: int = Field(
        default=1024, ge=1, description="Open connections and requests before new ones get 503."
    )
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="Request line and headers, in bytes.")
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds for a client to send its headers; a connection that has not by then is closed.",
    )
    read_timeout_s: float = Field(
        default=60.0, gt=0, description="A request body that stalls this many seconds is answered 408."
    )
    body_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A request body that has not arrived in full this many seconds after the server began reading "
        "it is answered 408, however it trickles in (raise it for large uploads over slow links).",
    )
    keepalive_timeout_s: float = Field(
        default=5.0, gt=0, description="Idle keep-alive connections are closed after this many seconds."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return split_list(value)
