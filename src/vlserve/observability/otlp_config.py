"""The OTLP export settings read as OpenTelemetry's own variables are (no OpenTelemetry import here).

``VLSERVE_OTLP_ENDPOINT`` follows ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: a
base URL (no path) gets ``/v1/traces``, a URL with a path is the traces endpoint itself.
``VLSERVE_OTLP_HEADERS`` has the ``OTEL_EXPORTER_OTLP_HEADERS`` format: ``key=value`` pairs separated by
commas, values percent-decoded.
"""

from __future__ import annotations

import importlib
from urllib.parse import unquote, urlsplit

INSTALL_HINT = "pip install 'vlserve[otel]'"
TRACES_PATH = "/v1/traces"
# What the export needs beyond opentelemetry-api (which FastAPI itself imports): the SDK and the exporter.
_REQUIRED = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")


def traces_url(endpoint: str) -> str:
    """The URL spans are posted to; ValueError for anything but an absolute http(s) URL."""
    endpoint = endpoint.strip()
    try:
        parts = urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a malformed host or port
        valid = False
    if not valid:
        raise ValueError("the OTLP endpoint must be an absolute http:// or https:// URL")
    return endpoint.rstrip("/") + TRACES_PATH if parts.path in ("", "/") else endpoint


def parse_headers(text: str) -> dict[str, str]:
    """``"authorization=Bearer x,tenant=a"`` as a dict; ValueError naming the malformed pair's position."""
    headers: dict[str, str] = {}
    for number, pair in enumerate(text.split(","), start=1):
        if not pair.strip():
            continue
        name, sep, value = pair.partition("=")
        name = unquote(name).strip().lower()
        if not sep or not name or any(c.isspace() or c in '"(),/:;<=>?@[\\]{}' for c in name):
            raise ValueError(f"OTLP header {number} is not name=value (expected e.g. authorization=Bearer%20x)")
        headers[name] = unquote(value).strip()
    return headers


def missing_package() -> str | None:
    """None when the OpenTelemetry SDK and OTLP/HTTP exporter import; else the module that does not."""
    for module in _REQUIRED:
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None
