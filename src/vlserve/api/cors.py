"""The CORS policy (``VLSERVE_CORS_ORIGINS``): which browser origins may call the API.

Off by default: no CORS header is sent, so a page on another origin cannot read any answer. When origins
are set, Starlette's CORSMiddleware answers preflights itself (before authentication, which a preflight
cannot pass: browsers send it without the Authorization header) and lets the page send ``Authorization``
and ``Content-Type`` (and ``Cache-Control``) and read the request id, ``Retry-After``, the rate-limit headers
and ``x-vlserve-cache``. Credentials
(cookies) are never allowed: the API is called with a bearer key, not a session.
"""

from __future__ import annotations

from typing import Any

from vlserve.settings import Settings

ALLOWED_METHODS = ("GET", "HEAD", "POST", "DELETE")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Cache-Control")  # Cache-Control: the response cache's
EXPOSED_HEADERS = (
    "x-request-id",
    "Retry-After",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-vlserve-cache",
)
PREFLIGHT_MAX_AGE_S = 600


def cors_options(settings: Settings) -> dict[str, Any] | None:
    """Keyword arguments for ``CORSMiddleware``; None when no origin is allowed (no middleware at all)."""
    if not settings.cors_origins:
        return None
    return {
        "allow_origins": list(settings.cors_origins),
        "allow_methods": list(ALLOWED_METHODS),
        "allow_headers": list(ALLOWED_HEADERS),
        "expose_headers": list(EXPOSED_HEADERS),
        "allow_credentials": False,
        "max_age": PREFLIGHT_MAX_AGE_S,
    }
