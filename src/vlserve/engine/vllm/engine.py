"""The managed backend: `vllm serve` started and supervised by vlserve, reached through the remote engine.

vLLM listens on a free loopback port with a random per-process API key; only vlserve talks to it.
The server is ready once the child's ``/health`` answers 200 and a warm-up request with an image has
run through it; a child that dies makes it not ready until a restarted child has passed both again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator

import httpx

from vlserve.engine.background import Background
from vlserve.engine.base import Delta, EngineRequest, EngineStatus, Exposition, ModelInfo, Prepared, SamplingParams
from vlserve.engine.capabilities import refuse_videos
from vlserve.engine.checkpoint_files import CheckpointError, architecture, image_budget, read_config
from vlserve.engine.remote import RemoteConfig, RemoteEngine
from vlserve.engine.vllm.command import VLLM_VERSION, ChildCommand, max_videos, vllm_command
from vlserve.engine.vllm.metrics import scrape
from vlserve.engine.vllm.supervisor import ChildProcess
from vlserve.engine.warmup import warm_up
from vlserve.errors import ServiceUnavailableError
from vlserve.settings import Settings
from vlserve.structured import OutputFormat

log = logging.getLogger("vlserve.engine")

INSTALL_HINT = f"pip install 'vlserve[vllm]' (vLLM {VLLM_VERSION}, on a machine with an NVIDIA GPU)"


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VllmEngine:
    name = "vllm"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model_dir = settings.model_dir()
        self._key = secrets.token_urlsafe(32)
        self._budget = image_budget(self._model_dir, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
        config = RemoteConfig.from_settings(
            settings,
            upstreams=("http://127.0.0.1:1/v1",),  # replaced by the child's port at every start
            budget=self._budget,
            model=settings.model_name(),
            served_name=settings.model_name(),
            api_key=self._key,
            max_model_len=None,  # what the child reports: --vllm-args may have changed it
            name=self.name,
        )
        self._remote = RemoteEngine(config)
        self._child = ChildProcess("vllm", self._next_command)
        self._architecture = ""
        self._max_videos = max_videos(settings)  # what vLLM was told to take
        self._warmed = 0  # the child start a warm-up has run on
        self._watcher = Background("vlserve-vllm-warmup")
        self._scraper = httpx.AsyncClient(trust_env=False, follow_redirects=False)  # the child's /metrics

    def _next_command(self) -> ChildCommand:
        port = free_loopback_port()
        self._remote.pool.retarget([f"http://127.0.0.1:{port}/v1"])
        return vllm_command(
            self._settings, model_dir=self._model_dir, port=port, api_key=self._key, budget=self._budget
        )

    @property
    def info(self) -> ModelInfo:
        return dataclasses.replace(
            self._remote.info, architecture=self._architecture, max_videos_per_request=self._max_videos
        )

    @property
    def ready(self) -> bool:
        return self._child.alive and self._remote.pool.any_healthy and self._warmed == self._child.starts

    @property
    def capacity(self) -> int:
        return self._remote.capacity

    def status(self) -> EngineStatus:
        running = self._remote.status().running
        if self.ready:
            return EngineStatus(running=running)
        if not self._child.alive:
            detail = self._child.last_exit or "starting vLLM"
        elif not self._remote.pool.any_healthy:
            detail = "vLLM is loading the model"
        else:
            detail = "warming up"
        return EngineStatus(running=running, detail=detail)

    async def start(self) -> None:
        self._architecture = architecture(read_config(self._model_dir))
        if shutil.which(self._settings.vllm_executable) is None:
            raise CheckpointError(f"vLLM is not installed; {INSTALL_HINT}")
        started = time.monotonic()
        self._child.start()
        self._remote.pool.start()
        self._watcher.start(self._warm_each_start)
        while not self.ready:
            await asyncio.sleep(0.2)
        log.info("vLLM ready after %.1f s", time.monotonic() - started)

    async def _warm_each_start(self) -> None:
        """After every (re)start of the child: wait for its /health, then run the warm-up through it."""
        while True:
            await asyncio.sleep(0.2)
            start = self._child.starts
            if start == self._warmed or not self._child.alive or not self._remote.pool.any_healthy:
                continue
            try:
                await self._remote.discover()
                await warm_up(self._remote)
            except Exception as exc:  # noqa: BLE001 - a child that fails its warm-up stays not ready
                log.warning("warm-up through vLLM failed: %s", getattr(exc, "message", None) or exc)
                await asyncio.sleep(1)
                continue
            self._warmed = start

    async def close(self) -> None:
        await self._watcher.stop()
        await self._remote.close()
        await self._child.stop()
        await self._scraper.aclose()

    async def engine_metrics(self) -> Exposition:
        """The child's own /metrics, as it serves them (GET /metrics/engine)."""
        if not self._child.alive:
            raise ServiceUnavailableError("vLLM is not running (starting or restarting)", headers={"Retry-After": "5"})
        url = f"{self._remote.pool.upstreams[0].root}/metrics"
        return await scrape(self._scraper, url, {"Authorization": f"Bearer {self._key}"})

    async def prepare(self, request: EngineRequest) -> Prepared:
        refuse_videos(request, self._max_videos, engine=self.name)  # vLLM would refuse them (its limit)
        return await self._remote.prepare(request)

    async def check(self, prepared: Prepared, params: SamplingParams) -> None:
        await self._remote.check(prepared, params)

    async def check_output(self, output: OutputFormat) -> None:
        await self._remote.check_output(output)

    def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        return self._remote.generate(prepared, params)
