"""Exception handlers: every error leaves as the OpenAI envelope with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vlserve.api.methods import allowed_methods
from vlserve.errors import ClientError, NotFoundError, ServerError, VLServeError, error_body, shorten
from vlserve.observability.accounting import note_error

log = logging.getLogger("vlserve.api")


def error_response(exc: VLServeError, verbatim: tuple[str, ...] = ()) -> JSONResponse:
    note_error(exc.code)  # errors by code, in the metrics
    return JSONResponse(error_body(exc, verbatim), status_code=exc.status_code, headers=exc.headers)


def _shown_path(request: Request) -> str:
    """The path as the client sent it (percent-encoded, so printable), shortened for the message."""
    raw = request.scope.get("raw_path")
    return shorten(raw.decode("latin-1") if raw else request.url.path)


def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's routing errors as envelopes: 404 and 405 name the method and path, 405 keeps ``Allow``."""
    path = _shown_path(request)
    if exc.status_code == 404:
        return error_response(NotFoundError(f"no route {request.method} {path}"), (path,))
    if exc.status_code == 405:
        allowed = allowed_methods(request.app, request.scope)
        err = ClientError(
            f"method {request.method} is not allowed on {path}; use {', '.join(allowed) or 'another path'}",
            code="method_not_allowed",
        )
        err.status_code, err.error_type = 405, "invalid_request_error"
        err.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        return error_response(err, (path,))
    err = ClientError(str(exc.detail), code=f"http_{exc.status_code}", headers=dict(exc.headers or {}))
    err.status_code = exc.status_code
    return error_response(err)


def _location(loc: tuple) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "form")]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(exc: RequestValidationError) -> ClientError:
    errors = exc.errors()
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return ClientError("the request body is not valid JSON", code="invalid_json")
    if tuple(first.get("loc", ())) == ("body",):  # no body, or not an object: say what the route takes
        what = "is missing" if first.get("type") == "missing" else "is not a JSON object"
        return ClientError(
            f"the request body {what}; send a JSON object with Content-Type: application/json", code="invalid_json"
        )
    param = _location(tuple(first.get("loc", ())))
    if first.get("type") == "missing":
        return ClientError(f"'{param}' is required", param=param or None)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return ClientError(f"invalid '{param}': {message}" if param else message, param=param or None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VLServeError)
    async def _vlserve(request: Request, exc: VLServeError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(ServerError("internal server error; see the server log"))
