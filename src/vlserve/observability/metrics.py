"""The server's Prometheus metrics, in a registry the app owns (never the process-wide default one).

:class:`Metrics` holds every ``vlserve_*`` metric. The metrics middleware observes each HTTP request
when its response has ended (:meth:`Metrics.observe_request`), the document worker each page
(:meth:`Metrics.observe_page`); queue depth, running requests and readiness are read from the engine
and the admission at scrape time (:class:`EngineCollector`), so they are never stale. Every label
value comes from the server (route templates, status codes, error codes, the served model, key ids),
never from what a client sent, so the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vlserve.observability.accounting import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NO_MODEL = "none"  # the model label of requests that never reached the model (health, 404, 401 …)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)
PAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


@dataclass(frozen=True)
class EngineGauges:
    ready: bool
    queue_depth: int  # requests waiting for a place in the engine
    running: int  # requests being generated
    admitted: int  # requests holding an admission slot (running and waiting, as the service counts them)


class EngineCollector(Collector):
    """Readiness and load, read from ``read`` at every scrape."""

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

    def watch_engine(self, read: Callable[[], EngineGauges | None]) -> None:
        """Report readiness and load from ``read``, called at every scrape."""
        self.registry.register(EngineCollector(read))

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
        if record.decode_s is not None and record.completion_tokens and record.completion_tokens > 1:
            self.tpot.observe(record.decode_s / (record.completion_tokens - 1))
        if status >= 400 or record.error_code is not None:
            self.errors.labels(record.error_code or f"http_{status}").inc()
        if key_id is not None and self.key_requests is not None and self.key_tokens is not None:
            self.key_requests.labels(key_id).inc()
            if record.total_tokens:
                self.key_tokens.labels(key_id).inc(record.total_tokens)

    def observe_page(self, outcome: str, seconds: float) -> None:
        self.pages.labels(outcome).inc()
        self.page_duration.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
