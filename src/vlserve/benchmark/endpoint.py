"""The endpoint under test: its base URL, a first check that it is an OpenAI-compatible API, the model id.

Every failure of the check is a :class:`BenchError` whose message is one line fit for the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx


class BenchError(Exception):
    """A benchmark that cannot run, in one line (the command exits 2 with it)."""


@dataclass(frozen=True)
class Endpoint:
    label: str  # "A", "B": how tables and the plot name it
    base: str  # …/v1
    model: str

    @property
    def chat_url(self) -> str:
        return f"{self.base}/chat/completions"


def base_url(url: str) -> str:
    """``http://host:8080``, ``…/v1/`` or ``…/v1/chat/completions`` → ``http://host:8080/v1``."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    text = text.rstrip("/")
    for tail in ("/chat/completions", "/models"):
        text = text.removesuffix(tail)
    if not text.endswith("/v1"):
        text += "/v1"
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise BenchError(f"{url!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BenchError(f"{url!r} is not an http(s) URL")
    return text


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def http_client(api_key: str | None = None, *, timeout: float = 120.0, trust_env: bool = True) -> httpx.AsyncClient:
    """The client a run sends with: no connection limit (a level's load is the limit), ``timeout`` per request."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeouts = httpx.Timeout(timeout, connect=min(10.0, timeout))
    return httpx.AsyncClient(headers=headers(api_key), limits=limits, timeout=timeouts, trust_env=trust_env)


async def check(client: httpx.AsyncClient, url: str, label: str, wanted: str | None, *, strict: bool) -> Endpoint:
    """GET /v1/models at ``url`` and pick the model: ``wanted`` (or its last path part, when ``wanted`` is a
    checkpoint directory) if listed, else the first id listed; ``strict``: a ``wanted`` name not listed is an
    error (the main URL), else the first id is taken (the --compare URL may call the model otherwise)."""
    base = base_url(url)
    try:
        response = await client.get(f"{base}/models")
    except httpx.ConnectError:
        raise BenchError(f"cannot reach {base}: connection refused or no such host") from None
    except httpx.TimeoutException:
        raise BenchError(f"cannot reach {base}: no answer in time") from None
    except httpx.HTTPError as exc:
        raise BenchError(f"cannot reach {base}: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        had_key = "authorization" in client.headers
        why = "refused the API key" if had_key else "needs an API key"
        raise BenchError(
            f"{base} {why} ({response.status_code}); pass --api-key or set VLSERVE_API_KEY or OPENAI_API_KEY"
        )
    ids = _model_ids(response)
    if ids is None:
        raise BenchError(
            f"{base} does not look like an OpenAI-compatible API: GET {base}/models answered "
            f"{response.status_code} without a model list"
        )
    if not ids:
        raise BenchError(f"{base} lists no models")
    if wanted is None:
        return Endpoint(label, base, ids[0])
    for candidate in (wanted, Path(wanted).name):
        if candidate in ids:
            return Endpoint(label, base, candidate)
    if strict and not Path(wanted).is_dir():
        raise BenchError(f"{base} does not serve {wanted!r}; it serves: {', '.join(ids[:10])}")
    return Endpoint(label, base, ids[0])


def _model_ids(response: httpx.Response) -> list[str] | None:
    if response.status_code != 200:
        return None
    try:
        data = response.json().get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, list):
        return None
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]
