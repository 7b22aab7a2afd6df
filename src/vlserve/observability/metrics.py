"""The server's Prometheus metrics, in a registry the app owns (never the process-wide default one).

:class:`Metrics` holds every ``vlserve_*`` metric. The metrics middleware observes each HTTP request
when its response has ended (:meth:`Metrics.observe_request`), the document worker each page
(:meth:`Metrics.observe_page`); queue depth, running requests, capacity, readiness and the stall check
are read from the engine and the admission at scrape time (:class:`EngineCollector`), so they are never
stale. Every label value comes from the server (route templates, status codes, error codes, the served
model, key ids), never from what a client sent, so the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vlserve.observability.accounting import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NO_MODEL = "none"  # the model label of requests that never reached the model (health, 404, 401 …)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)
CACHE_OUTCOMES = ("hit", "miss", "coalesced", "bypass")
PAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class EngineGauges:
    ready: bool
    queue_depth: int  # requests waiting for a place in the engine
    running: int  # requests being generated
    admitted: int  # requests holding an admission slot (running and waiting, as the service counts them)
    capacity: int = 0  # requests the engine can hold, running and waiting (admitted / capacity: saturation)
    stalled: bool = False  # requests wait on the engine and no token has come out for the stall timeout
    stalls: int = 0  # times the engine became stalled


class EngineCollector(Collector):
    """Readiness, load and the stalled-engine check, read from ``read`` at every scrape."""

    def __init__(self, read: Callable[[], EngineGauges | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        gauges = self._read()
        if gauges is None:  # no runtime yet (the app is starting)
            gauges = EngineGauges(ready=False, queue_depth=0, running=0, admitted=0)
        yield GaugeMetricFamily(
            "vlserve_model_ready", "1 when the model is loaded, warm and serving", int(gauges.ready)
        )
        yield GaugeMetricFamily("vlserve_queue_depth", "Requests waiting for the engine", gauges.queue_depth)
        yield GaugeMetricFamily("vlserve_running_requests", "Requests the engine is generating", gauges.running)
        yield GaugeMetricFamily(
            "vlserve_admitted_requests", "Requests admitted by the server (running or waiting)", gauges.admitted
        )
        yield GaugeMetricFamily(
            "vlserve_engine_capacity", "Requests the engine can hold, running and waiting", gauges.capacity
        )
        yield GaugeMetricFamily(
            "vlserve_engine_stalled", "1 while requests wait on the engine and no token comes out", int(gauges.stalled)
        )
        yield CounterMetricFamily("vlserve_engine_stalls", "Times the engine became stalled", gauges.stalls)


class CacheCollector(Collector):
    """The response cache's gauges, read at every scrape: entries held in process, and whether Redis answers."""

    def __init__(self, entries: Callable[[], int] | None, redis_up: Callable[[], bool] | None) -> None:
        self._entries = entries
        self._redis_up = redis_up

    def collect(self) -> Iterator[Metric]:
        if self._entries is not None:
            yield GaugeMetricFamily("vlserve_cache_entries", "Answers held by the in-process cache", self._entries())
        if self._redis_up is not None:
            yield GaugeMetricFamily("vlserve_redis_up", "1 while Redis answers its users", int(self._redis_up()))


class Metrics:
    def __init__(self, *, per_key: bool) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.per_key = per_key  # auth on: the per-key counters exist
        r = self.registry
        self.requests = Counter(
            "vlserve_requests",
            "HTTP requests by endpoint, model and status",
            ["endpoint", "model", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "vlserve_request_duration_seconds", "Time from request to the last byte of the response", ["endpoint"],
            buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "vlserve_time_to_first_token_seconds", "Time from engine submission to the first streamed token",
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.tpot = Histogram(
            "vlserve_time_per_output_token_seconds", "Mean time between output tokens after the first, per request",
            buckets=TPOT_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "vlserve_queue_wait_seconds", "Time a request waited inside the engine before generation began",
            buckets=QUEUE_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter("vlserve_prompt_tokens", "Prompt tokens (images included)", ["model"], registry=r)
        self.completion_tokens = Counter("vlserve_completion_tokens", "Generated tokens", ["model"], registry=r)
        self.image_tokens = Counter("vlserve_image_tokens", "Prompt tokens spent on images", ["model"], registry=r)
        self.errors = Counter("vlserve_errors", "Error responses by error code", ["code"], registry=r)
        self.key_requests: Counter | None = None
        self.key_tokens: Counter | None = None
        if per_key:
            self.key_requests = Counter("vlserve_key_requests", "Requests by API key", ["key_id"], registry=r)
            self.key_tokens = Counter(
                "vlserve_key_tokens", "Prompt and completion tokens by API key", ["key_id"], registry=r
            )
        self.pages = Counter("vlserve_document_pages", "Document pages read, by outcome", ["outcome"], registry=r)
        self.page_duration = Histogram(
            "vlserve_document_page_duration_seconds", "Time to read one document page (render, model, retries)",
            buckets=PAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.image_cache_lookups = Counter(
            "vlserve_image_cache_lookups", "Decoded-image cache lookups: hit (not decoded again) or miss",
            ["outcome"], registry=r,
        )  # fmt: skip
        for outcome in ("hit", "miss"):
            self.image_cache_lookups.labels(outcome)
        self.cache_lookups = Counter(
            "vlserve_cache_lookups", "Response cache lookups of cacheable requests, by outcome", ["outcome"], registry=r
        )
        self.cache_errors = Counter("vlserve_cache_errors", "Failed response cache operations", ["backend"], registry=r)

    def watch_engine(self, read: Callable[[], EngineGauges | None]) -> None:
        """Report readiness and load from ``read``, called at every scrape."""
        self.registry.register(EngineCollector(read))

    def watch_cache(self, entries: Callable[[], int] | None, redis_up: Callable[[], bool] | None) -> None:
        """Report the response cache: ``entries`` held in process, whether Redis answers (each when given)."""
        for outcome in CACHE_OUTCOMES:
            self.cache_lookups.labels(outcome)
        if redis_up is not None:
            self.cache_errors.labels("redis")
        self.registry.register(CacheCollector(entries, redis_up))

    def observe_request(
        self, *, endpoint: str, status: int, seconds: float, record: RequestRecord, key_id: str | None
    ) -> None:
        model = record.model or NO_MODEL
        self.requests.labels(endpoint, model, str(status)).inc()
        self.duration.labels(endpoint).observe(seconds)
        if record.prompt_tokens:
            self.prompt_tokens.labels(model).inc(record.prompt_tokens)
        if record.completion_tokens:
            self.completion_tokens.labels(model).inc(record.completion_tokens)
        if record.image_tokens:
            self.image_tokens.labels(model).inc(record.image_tokens)
        if record.first_token_s is not None:
            self.ttft.observe(record.first_token_s)
        if record.queue_wait_s is not None:
            self.queue_wait.observe(record.queue_wait_s)
        if record.decode_s is not None and record.completion_tokens and record.completion_tokens > 1:
            self.tpot.observe(record.decode_s / (record.completion_tokens - 1))
        if record.cache is not None:
            self.cache_lookups.labels(record.cache).inc()
        if status >= 400 or record.error_code is not None:
            self.errors.labels(record.error_code or f"http_{status}").inc()
        if key_id is not None and self.key_requests is not None and self.key_tokens is not None:
            self.key_requests.labels(key_id).inc()
            if record.total_tokens:
                self.key_tokens.labels(key_id).inc(record.total_tokens)

    def observe_page(self, outcome: str, seconds: float) -> None:
        self.pages.labels(outcome).inc()
        self.page_duration.observe(seconds)

    def observe_image_cache(self, outcome: str) -> None:
        """One lookup of the decoded-image cache (called from decode worker threads)."""
        self.image_cache_lookups.labels(outcome).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
