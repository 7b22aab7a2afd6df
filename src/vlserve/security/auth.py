"""Pure-ASGI middleware: every request but the health probes presents an API key with the scope it needs.

With auth on (``Settings.auth_required()``), a request without ``Authorization: Bearer <key>`` is a 401
``missing_api_key``; an unknown, revoked or expired key a 401 ``invalid_api_key``; a key without the
route's scope a 403 ``insufficient_scope``. The check runs before routing, so unknown paths and 404s are
covered too. The key's :class:`Principal` is left in ``scope["state"]["principal"]`` for the layers
inside. With auth off nothing changes and the principal is None.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from vlserve.errors import (
    AuthenticationError,
    ClientError,
    PermissionDeniedError,
    ServiceUnavailableError,
    VLServeError,
    error_body,
)
from vlserve.security.principal import Principal
from vlserve.settings import Settings

log = logging.getLogger("vlserve.security")

ANY_KEY = "any"  # a route any valid key may use, whatever its scopes
REFUSED_KEY = "refused_key_id"  # in scope["state"]: the id of a revoked or expired key a request presented


def is_open(path: str) -> bool:
    """The health probes answer without a key (load balancers and orchestrators call them)."""
    return path == "/health" or path.startswith("/health/")


def is_playground(path: str) -> bool:
    """The browser playground's page and files (``/``, ``/web/...``): nothing secret in them; the page asks for a key
    and sends it with its API calls. Open only while the playground is served (``VLSERVE_PLAYGROUND``)."""
    return path == "/" or path.startswith("/web/")


def required_scope(path: str) -> str:
    """The scope a path needs: documents, chat (every other /v1 route), metrics; admin for anything unlisted."""
    if path == "/v1/documents" or path.startswith("/v1/documents/"):
        return "documents"
    if path == "/v1" or path.startswith("/v1/"):
        return "chat"
    if path == "/metrics" or path.startswith("/metrics/"):
        return "metrics"
    if path in ("/docs", "/openapi.json") or path.startswith("/docs/"):
        return ANY_KEY
    return "admin"


def bearer_token(scope: Scope) -> str | None:
    """The key from ``Authorization: Bearer <key>``; None when there is no such header. Two or more
    ``Authorization`` headers are a 400: which one counts would depend on who reads them (a proxy, this server)."""
    values = [value for name, value in scope.get("headers", []) if name == b"authorization"]
    if len(values) > 1:
        raise ClientError(
            f"the request has {len(values)} Authorization headers; send exactly one, 'Authorization: Bearer <key>'",
            param="Authorization",
            code="duplicate_authorization_header",
        )
    if not values:
        return None
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class AuthMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.required = settings.auth_required()
        self.playground = settings.playground  # its page and files hold nothing secret: the page asks for a key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.required or self._open(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._authenticate(scope)
            scope.setdefault("state", {})["principal"] = principal  # a 403 below is still this key's request
            self._authorize(principal, scope["path"])
        except VLServeError as exc:
            if isinstance(exc, AuthenticationError) and exc.key_id is not None:  # revoked or expired: who tried
                scope.setdefault("state", {})[REFUSED_KEY] = exc.key_id
            await _refuse(scope, receive, send, exc)
            return
        await self.app(scope, receive, send)

    def _open(self, path: str) -> bool:
        return is_open(path) or (self.playground and is_playground(path))

    async def _authenticate(self, scope: Scope) -> Principal:
        token = bearer_token(scope)
        if token is None:
            raise AuthenticationError(
                "this server needs an API key: send it as 'Authorization: Bearer <key>' "
                "(create one with `vlserve keys create NAME`)",
                code="missing_api_key",
            )
        runtime = getattr(scope["app"].state, "vlserve", None)
        if runtime is None:
            raise ServiceUnavailableError("the server is starting; retry shortly", headers={"Retry-After": "5"})
        try:
            principal = await runtime.keys.verify(token)
        except AuthenticationError:
            raise
        except Exception as exc:  # the key database is down: the caller may retry, it is not their fault
            log.error("checking an API key failed: %s", exc)
            raise ServiceUnavailableError(
                "API keys cannot be checked right now; retry shortly", headers={"Retry-After": "5"}
            ) from exc
        return principal

    @staticmethod
    def _authorize(principal: Principal, path: str) -> None:
        needed = required_scope(path)
        if needed != ANY_KEY and not principal.allows(needed):
            raise PermissionDeniedError(
                f"API key {principal.key_id} lacks the {needed!r} scope this route needs "
                f"(it has: {', '.join(sorted(principal.scopes))})"
            )


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: VLServeError) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": exc.code or "unauthorized"})
        return
    response = JSONResponse(error_body(exc), status_code=exc.status_code, headers=exc.headers)
    await response(scope, receive, send)
