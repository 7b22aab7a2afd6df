"""The upstream servers of the remote engine: health-checked, used round-robin, skipped while unhealthy.

Each upstream is probed on its ``/health`` (vLLM, SGLang, vlserve) every ``interval`` seconds, every
second while none is healthy; an upstream without ``/health`` (404) is probed on ``/v1/models``
instead. A request that cannot connect marks its upstream unhealthy at once; the next probe that
passes brings it back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx

from vlserve.engine.background import Background
from vlserve.errors import UpstreamError

log = logging.getLogger("vlserve.upstream")

_PROBE_TIMEOUT_S = 5.0


def base_url(url: str) -> str:
    """The OpenAI base URL (``…/v1``) of an upstream given with or without ``/v1``."""
    url = url.strip().rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


@dataclass(eq=False)
class Upstream:
    url: str  # the OpenAI base URL, …/v1
    healthy: bool = False
    reason: str = "not checked yet"
    probe_path: str = field(default="/health")  # relative to the server root

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def set_health(self, healthy: bool, reason: str) -> None:
        if healthy != self.healthy:
            if healthy:
                log.info("upstream %s is healthy", self.url)
            else:
                log.warning("upstream %s is unhealthy: %s", self.url, reason)
        self.healthy, self.reason = healthy, reason


class UpstreamPool:
    def __init__(self, urls: list[str], client: httpx.AsyncClient, *, interval: float, headers: dict[str, str]) -> None:
        if not urls:
            raise ValueError("at least one upstream URL is needed")
        self.upstreams = [Upstream(base_url(u)) for u in urls]
        self._client = client
        self._interval = interval
        self._headers = headers
        self._next = 0
        self._task = Background("vlserve-upstream-health")

    @property
    def any_healthy(self) -> bool:
        return any(u.healthy for u in self.upstreams)

    def start(self) -> None:
        self._task.start(self._loop)

    async def stop(self) -> None:
        await self._task.stop()

    async def wait_healthy(self) -> None:
        while not self.any_healthy:
            await asyncio.sleep(0.1)

    def pick(self, exclude: list[Upstream]) -> Upstream:
        """The next healthy upstream not in ``exclude`` (round-robin); 503 when there is none."""
        count = len(self.upstreams)
        for step in range(count):
            upstream = self.upstreams[(self._next + step) % count]
            if upstream.healthy and upstream not in exclude:
                self._next = (self._next + step + 1) % count
                return upstream
        raise UpstreamError("no upstream engine is available; retry shortly", status_code=503)

    def retarget(self, urls: list[str]) -> None:
        """Point the pool at new URLs (a restarted managed engine listens on a new port); unhealthy until probed."""
        self.upstreams = [Upstream(base_url(u)) for u in urls]
        self._next = 0

    def failed(self, upstream: Upstream, reason: str) -> None:
        upstream.set_health(False, reason)

    async def _loop(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self._interval if self.any_healthy else min(self._interval, 1.0))

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(u) for u in self.upstreams))

    async def _check(self, upstream: Upstream) -> None:
        try:
            status = await self._probe(upstream, upstream.probe_path)
            if status == 404 and upstream.probe_path == "/health":  # a peer without /health
                upstream.probe_path = "/v1/models"
                status = await self._probe(upstream, upstream.probe_path)
        except httpx.HTTPError as exc:
            upstream.set_health(False, f"{upstream.probe_path}: {type(exc).__name__}")
            return
        upstream.set_health(status == 200, f"{upstream.probe_path} answered HTTP {status}")

    async def _probe(self, upstream: Upstream, path: str) -> int:
        timeout = min(self._interval, _PROBE_TIMEOUT_S)
        response = await self._client.get(upstream.root + path, headers=self._headers, timeout=timeout)
        return response.status_code
