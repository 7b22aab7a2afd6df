"""Optional OpenTelemetry trace export over OTLP/HTTP: the tracer provider of one app.

Imported only when ``VLSERVE_OTLP_ENDPOINT`` is set (app.py imports it lazily, after ``vlserve serve`` checked
that the packages are there), so a server without it loads none of OpenTelemetry's SDK and pays nothing per
request. The provider is the app's own, not the process-wide global: two apps in one process (the tests) never
share spans, and FastAPI's built-in instrumentation, which uses the global provider, stays off rather than
adding a second server span per request.

Spans go through a ``BatchSpanProcessor`` (a background thread posts batches; a request never waits on the
collector) and are flushed when the app shuts down. A root span (no ``traceparent`` from the client) takes
the vlserve request id as its trace id when that is 32 hex digits, so logs, ``X-Request-Id`` and the trace
carry the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from vlserve import __version__
from vlserve.observability.otlp_config import parse_headers
from vlserve.observability.request_id import current_request_id
from vlserve.settings import Settings

log = logging.getLogger("vlserve.tracing")
EXPORT_TIMEOUT_S = 10.0
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class RequestIdTraceIds(RandomIdGenerator):
    """Random span ids; a root span's trace id is the request id when it can be one (32 lower-case hex digits,
    not all zero), else random."""

    def generate_trace_id(self) -> int:
        request_id = current_request_id.get()
        if _TRACE_ID.match(request_id) and int(request_id, 16):
            return int(request_id, 16)
        return super().generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return False  # a client's X-Request-Id need not be random (W3C's random-trace-id flag stays off)


class Tracing:
    """Starts the provider (in the app's lifespan), hands out its tracer, flushes and stops it at the end."""

    def __init__(self, settings: Settings) -> None:
        if settings.otlp_endpoint is None:
            raise ValueError("tracing needs VLSERVE_OTLP_ENDPOINT")
        self.endpoint = settings.otlp_endpoint
        secret = settings.otlp_headers
        self._headers = parse_headers(secret.get_secret_value()) if secret is not None else {}
        self._service_name = settings.otlp_service_name
        self._provider: TracerProvider | None = None
        self.tracer: Tracer | None = None  # None until started: requests then pass untraced

    def start(self) -> None:
        resource = Resource.create({"service.name": self._service_name, "service.version": __version__})
        provider = TracerProvider(resource=resource, id_generator=RequestIdTraceIds(), shutdown_on_exit=False)
        exporter = OTLPSpanExporter(endpoint=self.endpoint, headers=self._headers, timeout=EXPORT_TIMEOUT_S)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        # A collector that is down: one error line per lost batch, not a warning per retry as well.
        logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.ERROR)
        self._provider, self.tracer = provider, provider.get_tracer("vlserve", __version__)
        log.info("exporting traces to %s", _without_credentials(self.endpoint))

    def shutdown(self) -> None:
        """Export the spans still queued (blocking, bounded by the export timeout), then stop."""
        provider, self._provider, self.tracer = self._provider, None, None
        if provider is not None:
            provider.shutdown()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Tracing]:
        self.start()
        try:
            yield self
        finally:
            await asyncio.to_thread(self.shutdown)


def _without_credentials(url: str) -> str:
    """The endpoint as logged: no user:password part."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url
