"""Exception handlers: every error leaves as the OpenAI envelope with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vlserve.errors import ClientError, NotFoundError, ServerError, VLServeError, error_body

log = logging.getLogger("vlserve.api")


def error_response(exc: VLServeError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=exc.status_code, headers=exc.headers)


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
        if exc.status_code == 404:
            err: VLServeError = NotFoundError(f"no route {request.method} {request.url.path}")
        else:
            err = ClientError(str(exc.detail), code=f"http_{exc.status_code}")
            err.status_code = exc.status_code
        return error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(ServerError("internal server error; see the server log"))
