"""The remote backend: an OpenAI-compatible fleet (vLLM, SGLang, another vlserve) reached over HTTP.

Each request goes to one upstream picked round-robin among the healthy ones, always streamed, even when
the client waits for the whole answer: every token coming back is progress the stalled-engine check
sees; a chat goes to its ``/chat/completions``, a raw text prompt to its ``/completions``. It is
retried on another upstream only if it failed before its first token (so before any byte reached the
client). Deadlines: connecting, the first token (a streaming client's), the whole request. A client
that goes away closes the upstream connection, which makes vLLM abort the request.
Upstream addresses and keys never reach a client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from vlserve.engine.base import Delta, EngineRequest, EngineStatus, ModelInfo, Prepared, SamplingParams
from vlserve.engine.capabilities import ALL_FEATURES, refuse_unsupported
from vlserve.engine.remote.config import RemoteConfig
from vlserve.engine.remote.exchange import Exchange, Retryable, deltas
from vlserve.engine.remote.media import inline_media
from vlserve.engine.remote.upstreams import Upstream, UpstreamPool
from vlserve.engine.remote.wire import chat_inputs, request_body
from vlserve.engine.warmup import warm_up
from vlserve.errors import ContextLengthError, RateLimitError, ServerError
from vlserve.observability.request_id import current_request_id, current_traceparent
from vlserve.structured import OutputFormat

log = logging.getLogger("vlserve.engine")

SUPPORTED = ALL_FEATURES  # every optional feature in vlserve.engine.capabilities


@dataclass
class RemotePrompt(Prepared):
    inputs: dict[str, Any] = field(default_factory=dict)  # the body's messages and tools, or its prompt
    endpoint: str = "chat/completions"  # or "completions", for a raw text prompt


class RemoteEngine:
    def __init__(self, config: RemoteConfig) -> None:
        self._config = config
        self.name = config.name
        headers = {} if config.api_key is None else {"Authorization": f"Bearer {config.api_key}"}
        self._headers = headers
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=config.connect_timeout, read=None, write=60.0, pool=config.connect_timeout),
            limits=httpx.Limits(max_connections=config.max_inflight + 16, max_keepalive_connections=64),
            trust_env=False,  # never through an environment proxy: upstreams are on the private network
            follow_redirects=False,
        )
        self.pool = UpstreamPool(list(config.upstreams), self._client, interval=config.health_interval, headers=headers)
        self._model = config.model or ""
        self._info = ModelInfo(
            id=config.served_name or config.model or "",
            max_model_len=config.max_model_len or 0,
            max_images_per_request=config.max_images,
            architecture="remote",
            created=int(time.time()),
            min_pixels=config.budget.min_pixels,
            max_pixels=config.budget.max_pixels,
        )
        self._warm = False
        self._inflight = 0

    @classmethod
    def from_settings(cls, settings: Any) -> RemoteEngine:
        return cls(RemoteConfig.from_settings(settings))

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def ready(self) -> bool:
        return self._warm and self.pool.any_healthy

    @property
    def capacity(self) -> int:
        """Requests in flight to the upstreams at once (they queue there)."""
        return self._config.max_inflight

    def status(self) -> EngineStatus:
        detail = None
        if not self.pool.any_healthy:
            detail = "no upstream engine is healthy"
        elif not self._warm:
            detail = "warming up"
        return EngineStatus(queue_depth=0, running=self._inflight, detail=detail)

    async def start(self) -> None:
        started = time.monotonic()
        self.pool.start()
        if not self.pool.any_healthy:
            log.info("waiting for an upstream engine to become healthy")
        await self.pool.wait_healthy()
        await self.discover()
        if self._config.warmup:
            await warm_up(self)
        self._warm = True
        log.info("remote engine ready after %.1f s: model %s", time.monotonic() - started, self._model)

    async def close(self) -> None:
        self._warm = False
        await self.pool.stop()
        await self._client.aclose()

    async def discover(self) -> None:
        """The upstream's model (the configured one, else the first it lists) and its context length."""
        upstream = self.pool.pick([])
        response = await self._client.get(f"{upstream.url}/models", headers=self._headers)
        if response.status_code != 200:
            raise ServerError(f"the upstream's model list answered HTTP {response.status_code}")
        models = [m for m in response.json().get("data", []) if isinstance(m, dict) and m.get("id")]
        if not models:
            raise ServerError("the upstream serves no model")
        wanted = self._config.model or models[0]["id"]
        card = next((m for m in models if m["id"] == wanted), None)
        if card is None:
            served = [m["id"] for m in models]
            raise ServerError(f"the upstream does not serve the model {wanted!r}; it serves {served}")
        self._model = wanted
        limit = self._config.max_model_len or int(card.get("max_model_len") or 0)
        self._info = dataclasses.replace(self._info, id=self._config.served_name or wanted, max_model_len=limit)

    # --- requests ----------------------------------------------------------------------------------
    async def prepare(self, request: EngineRequest) -> RemotePrompt:
        if request.prompt is not None:
            return RemotePrompt(request, 0, {"prompt": request.prompt}, "completions")

        def inline() -> RemotePrompt:
            pairs = [inline_media(item, self._config.budget, self._config.image_format) for item in request.media]
            inputs = chat_inputs(request, [url for url, _ in pairs])
            return RemotePrompt(request, sum(tokens for _, tokens in pairs), inputs)

        return await asyncio.to_thread(inline)

    async def check(self, prepared: Prepared, params: SamplingParams) -> None:
        refuse_unsupported(prepared.request, params, supported=SUPPORTED, engine=self.name)
        limit = self._info.max_model_len
        if limit and params.max_tokens is not None and params.max_tokens >= limit:
            raise ContextLengthError(
                f"this model's context is {limit} tokens; max_tokens {params.max_tokens} leaves no room for the prompt",
                param="max_tokens",
            )

    async def check_output(self, output: OutputFormat) -> None:
        """The upstream enforces the format while decoding; vlserve validates every answer afterwards."""

    async def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        if not isinstance(prepared, RemotePrompt):
            raise ServerError(f"a {type(prepared).__name__} was given to the {self.name} engine")
        if self._inflight >= self._config.max_inflight:
            raise RateLimitError(
                f"the server is at capacity ({self._config.max_inflight} requests in flight); retry shortly",
                headers={"Retry-After": "1"},
            )
        if params.max_tokens is None and self._config.default_max_tokens is not None:
            params = dataclasses.replace(params, max_tokens=self._config.default_max_tokens)
        body = request_body(self._model, prepared.inputs, params, stream=True)
        self._inflight += 1
        queued: float | None = 0.0  # nothing waits here: beyond the in-flight limit a request is refused
        try:
            tried: list[Upstream] = []
            while True:
                upstream = self.pool.pick(tried)
                tried.append(upstream)
                started = False
                try:
                    async for delta in deltas(self._exchange(upstream, prepared, params.incremental), body):
                        started = True
                        if queued is not None:
                            delta, queued = dataclasses.replace(delta, queued_s=queued), None
                        yield delta
                    return
                except Retryable as retry:
                    if retry.unreachable:
                        self.pool.failed(upstream, "connection refused or timed out")
                    if started:
                        raise retry.error from None
                    log.warning("upstream %s failed before the first token: %s", upstream.url, retry.error.message)
                    if not any(u.healthy and u not in tried for u in self.pool.upstreams):
                        raise retry.error from None
        finally:
            self._inflight -= 1

    def _exchange(self, upstream: Upstream, prepared: RemotePrompt, incremental: bool) -> Exchange:
        """The request to ``upstream``; the first-token deadline only for a client reading token by token."""
        trace_id, traceparent = current_request_id.get(), current_traceparent.get()
        headers = self._headers if trace_id == "-" else {**self._headers, "X-Request-Id": trace_id}
        if traceparent is not None:  # the caller's W3C trace context, passed on unchanged
            headers = {**headers, "traceparent": traceparent}
        return Exchange(
            self._client, f"{upstream.url}/{prepared.endpoint}", headers, prepared.image_tokens, self.scrub,
            first_token_timeout=self._config.first_token_timeout if incremental else self._config.timeout,
            timeout=self._config.timeout,
        )  # fmt: skip

    def scrub(self, message: str) -> str:
        """The message without any upstream address or key."""
        secrets = [self._config.api_key or ""]
        for upstream in self.pool.upstreams:
            host = httpx.URL(upstream.url).host
            secrets += [upstream.url, upstream.root, httpx.URL(upstream.url).netloc.decode(), host]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            message = message.replace(secret, "<upstream>")
        return message
