"""The managed vLLM child's own ``/metrics`` (its scheduler queue, KV-cache use, prefix-cache hits …), read
for ``GET /metrics/engine``: bounded in time and size, its content type passed through."""

from __future__ import annotations

import asyncio

import httpx

from vlserve.engine.base import Exposition
from vlserve.errors import ServiceUnavailableError, UpstreamError

SCRAPE_TIMEOUT_S = 5.0
MAX_BYTES = 16 * 2**20  # vLLM's exposition is a few hundred KiB with every histogram
DEFAULT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _unavailable(why: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"the vLLM engine's metrics cannot be read: {why}", headers={"Retry-After": "5"})


async def scrape(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Exposition:
    """GET ``url`` (the child's ``/metrics``); 503 when the child does not answer it in time, 502 when it
    answers with an error or more than :data:`MAX_BYTES`."""
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_S), client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise UpstreamError(f"the vLLM engine answered its metrics with HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise UpstreamError(f"the vLLM engine's metrics are larger than {MAX_BYTES} bytes")
            return Exposition(bytes(body), response.headers.get("content-type", DEFAULT_TYPE))
    except TimeoutError:
        raise _unavailable(f"no answer within {SCRAPE_TIMEOUT_S:g} s") from None
    except httpx.HTTPError as exc:
        raise _unavailable(f"it cannot be reached ({type(exc).__name__})") from None
