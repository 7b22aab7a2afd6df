"""How `vlserve serve` runs uvicorn: bind first, guarded connections, a graceful drain on SIGTERM/SIGINT.

1. :func:`bind` takes the port before anything else starts (model, database, document worker), so a port in
   use fails in one line and a second server touches no job.
2. uvicorn runs the app behind :class:`~vlserve.api.draining.DrainGate` with h11 and the limits of
   :mod:`vlserve.server_protocol`.
3. :class:`GracefulServer`: the first SIGTERM/SIGINT stops new work at once (the sockets stop listening, so
   new connections are refused; requests on connections still open get 503 ``shutting_down``; the document
   worker claims no page) and lets what is in flight run until
   ``shutdown_grace_s``; past that deadline a stream ends with an error event and ``[DONE]``, an answer
   with a 503. The process then exits 0, after one log line saying how many requests were drained or ended.
   A second signal moves the deadline to now. Connections whose clients stall even then are closed
   :data:`SAFETY_MARGIN_S` after the deadline (uvicorn's own graceful timeout, never the normal path).
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlserve.api.draining import DrainGate
from vlserve.observability.logging import log_config
from vlserve.server_protocol import protocol_for
from vlserve.service.shutdown import Drain
from vlserve.settings import Settings

log = logging.getLogger("vlserve.server")

SAFETY_MARGIN_S = 5.0  # past the deadline: connections still open are closed, tasks still running cancelled
FORCED_MARGIN_S = 1.0  # the same after a second signal
BACKLOG = 2048


class BindError(Exception):
    """The listening address cannot be taken; the message is the one line the CLI prints."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address of ``host`` (``localhost``: IPv4 and IPv6), bound and listening,
    so a second server on the same port fails here; connections wait in the backlog until serving starts."""
    where = _where(host, port)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot serve: {host!r} is not an address of this machine ({exc.strerror})") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart past TIME_WAIT, never share
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                f"cannot serve: {where} is already in use (another vlserve or another program listens there); "
                "stop it or choose another --port"
            ) from None
        raise BindError(f"cannot serve: cannot listen on {where} ({exc.strerror or exc})") from None
    return sockets


class BriefStartupFailure:
    """A start-up that fails (the database cannot be reached, …) is logged as one line saying why, instead
    of the lifespan's traceback (kept in the debug log); uvicorn then exits with status 3."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_brief(message: Message) -> None:
            failure = sys.exc_info()[1]  # sent from the app's except block: the exception it handles
            if message["type"] == "lifespan.startup.failed" and failure is not None:
                log.debug("start-up failed", exc_info=failure)
                reason = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
                message = {**message, "message": f"cannot serve: start-up failed: {reason}"}
            await send(message)

        await self.app(scope, receive, send_brief)


class GracefulServer(uvicorn.Server):
    """uvicorn's server with vlserve's drain: see the module docstring."""

    def __init__(
        self, config: uvicorn.Config, *, drain: Drain, grace_s: float, on_drain: Callable[[float], None]
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._grace_s = grace_s
        self._on_drain = on_drain  # told the deadline (event-loop time) when draining begins
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn, the signal is not raised again after the shutdown: a drained server exits 0.
        if self._loop is None:
            self.should_exit = True
            return
        # The handler interrupts whatever the loop's thread runs: the callbacks run in a context of their own,
        # not in that of the request that happened to be running.
        if self.should_exit:
            self.force_exit = True
            self._loop.call_soon_threadsafe(self._force, signal.Signals(sig).name, context=contextvars.Context())
        else:
            self.should_exit = True
            self._loop.call_soon_threadsafe(self._begin, signal.Signals(sig).name, context=contextvars.Context())

    def _begin(self, cause: str) -> None:
        if self._drain.draining:
            return
        self._drain.begin(self._grace_s)
        log.info(
            "%s: shutting down; %d request(s) in flight may run %g s more, new connections are refused (signal "
            "again to stop at once)", cause, self._drain.in_flight, self._grace_s,
        )  # fmt: skip
        assert self._drain.deadline is not None
        self._on_drain(self._drain.deadline)

    def _force(self, cause: str) -> None:
        self._begin(cause)
        log.info("%s again: ending the requests in flight now", cause)
        self._drain.expire_now()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            for sock in sockets:
                host, port = sock.getsockname()[:2]
                log.info("listening on http://%s (Ctrl+C to stop)", _where(host, port))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._begin("exit")  # already begun on a signal
        assert self._drain.deadline is not None
        self._on_drain(self._drain.deadline)  # again: the runtime may have been built since the signal
        for server in self.servers:
            server.close()  # no new connections
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle ones close now, busy ones after their response
        await self._wait_for_requests()
        cut = await self._cut_stragglers()
        log.info("shutdown: %s", self._drain.summary(cut))
        await self.lifespan.shutdown()  # the document worker hands its pages back, the engine stops

    async def _wait_for_requests(self) -> None:
        loop = asyncio.get_running_loop()
        state = self.server_state
        while state.connections or state.tasks:
            margin = FORCED_MARGIN_S if self.force_exit else SAFETY_MARGIN_S
            if loop.time() >= (self._drain.deadline or 0) + margin:
                return
            await asyncio.sleep(0.05)

    async def _cut_stragglers(self) -> int:
        """Clients that stall even past the deadline: close their connections (their requests see a
        disconnect and end), then cancel what still runs; returns how many requests were still running."""
        state = self.server_state
        running = len(state.tasks)
        if not (state.connections or state.tasks):
            return 0
        log.warning("closing %d connection(s) still open past the shutdown deadline", len(state.connections))
        for connection in list(state.connections):
            connection.transport.close()
        for _ in range(20):
            if not state.tasks:
                return running
            await asyncio.sleep(0.05)
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        return running


def serve(settings: Settings, app: FastAPI, sockets: list[socket.socket]) -> None:
    """Serve ``app`` on ``sockets`` (from :func:`bind`) until SIGTERM/SIGINT; returns once drained."""
    drain = Drain()

    def stop_taking_work(deadline: float) -> None:
        runtime = getattr(app.state, "vlserve", None)  # None: the lifespan has not built it yet
        if runtime is not None:
            runtime.stop_taking_work(deadline)

    config = uvicorn.Config(
        BriefStartupFailure(DrainGate(app, drain)),
        http=protocol_for(settings),
        ws="none",
        lifespan="on",
        log_level=settings.log_level,
        log_config=log_config(settings.log_level, settings.log_format),  # our format, uvicorn's errors too
        access_log=False,  # vlserve writes its own access line (observability/access_log.py)
        backlog=BACKLOG,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type]  # a float works
        timeout_graceful_shutdown=int(settings.shutdown_grace_s + SAFETY_MARGIN_S),  # GracefulServer's too
    )
    server = GracefulServer(config, drain=drain, grace_s=settings.shutdown_grace_s, on_drain=stop_taking_work)
    server.run(sockets=sockets)
