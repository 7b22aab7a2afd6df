"""Pure-ASGI middleware giving every HTTP request one OpenTelemetry server span (only when tracing is on).

It sits just inside the request id, so it sees every request and its final status (health probes and metrics
scrapes are left untraced), and it reads what the layers inside noted on the :class:`RequestRecord` (model,
tokens, key, cache outcome, error code) when the response has ended. The span continues the client's W3C
trace (``traceparent``, and ``tracestate`` with it); while the request runs, the ``traceparent`` passed to a
remote upstream names this span as the parent, so the upstream's own spans (vLLM's) hang under vlserve's.

Span names and attributes follow the OpenTelemetry HTTP conventions: ``POST /v1/chat/completions`` (the route
template, never the raw path, so names stay few), ``http.request.method``, ``http.route``,
``http.response.status_code``; vlserve adds ``vlserve.*`` attributes. A request answered with an error
envelope, or a server error, ends with status ERROR and ``error.type`` set to its code.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Receive, Scope, Send

from vlserve.observability.metrics_middleware import UNMATCHED, endpoint_of, envelope_code
from vlserve.observability.request_id import current_request_id, current_traceparent
from vlserve.observability.response_watch import ResponseWatch
from vlserve.observability.tracing import Tracing
from vlserve.security.principal import principal_of

# Probes and scrapes (every few seconds, from machines) would drown the requests people look for.
UNTRACED = ("/health", "/metrics")
_SNIFF_BYTES = 4096  # as the metrics middleware: an error envelope's code, when no layer noted it
_PROPAGATOR = TraceContextTextMapPropagator()


def _parent(scope: Scope) -> Context | None:
    """The client's trace context: the request id middleware keeps a valid ``traceparent``; None starts a trace."""
    traceparent = current_traceparent.get()
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent}
    tracestate = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"tracestate"), None)
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier)


def _traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _finish(span: Span, scope: Scope, watch: ResponseWatch) -> None:
    record, status = watch.record, watch.final_status
    if status >= 400 and record.error_code is None:
        record.error_code = envelope_code(bytes(watch.error_head))
    route = endpoint_of(scope)
    if route != UNMATCHED:
        span.update_name(f"{scope.get('method', '')} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    principal = principal_of(scope)
    attributes = {
        "vlserve.model": record.model,
        "vlserve.prompt_tokens": record.prompt_tokens,
        "vlserve.completion_tokens": record.completion_tokens,
        "vlserve.image_tokens": record.image_tokens,
        "vlserve.key_id": None if principal is None else principal.key_id,
        "vlserve.cache": getattr(record, "cache", None),
    }
    span.set_attributes({name: value for name, value in attributes.items() if value is not None})
    error = record.error_code if status >= 400 else None
    if error is not None or status >= 500:
        span.set_attribute("error.type", error or str(status))
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracing: Tracing, keep_content: bool) -> None:
        self.app = app
        self.tracing = tracing
        self.keep_content = keep_content  # the outermost watcher opens the record the audit then fills

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self.tracing.tracer
        if scope["type"] != "http" or tracer is None or scope["path"].startswith(UNTRACED):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        span = tracer.start_span(
            method,
            context=_parent(scope),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope.get("path", ""),
                "url.scheme": scope.get("scheme", "http"),
                "vlserve.request_id": current_request_id.get(),
            },
        )
        token = current_traceparent.set(_traceparent_of(span))
        watch = ResponseWatch(send, keep_content=self.keep_content, error_bytes=_SNIFF_BYTES)
        try:
            await watch.run(self.app, scope, receive)
        finally:
            current_traceparent.reset(token)
            _finish(span, scope, watch)
