"""A loopback TCP proxy in a background thread, to take a server away from the code under test and back.

``cut()`` drops every connection and refuses new ones (the server is gone); ``hold()`` keeps connections
open but forwards nothing (the server hangs); ``restore()`` forwards again. The real server is never touched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._forwarding = threading.Event()
        self._lock = threading.Lock()

    def restore(self) -> None:
        """Accept connections and forward their bytes (again)."""
        self._forwarding.set()
        if self._listener is None:
            listener = socket.create_server((self.host, self.port))
            listener.settimeout(0.05)
            self._listener = listener
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Close the listener and every connection: the server is unreachable."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def hold(self) -> None:
        """Keep every connection open but forward nothing: the server hangs."""
        self._forwarding.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(None)
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._forwarding.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def tcp_proxy(target_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_port)
    proxy.restore()
    try:
        yield proxy
    finally:
        proxy._forwarding.set()
        proxy.cut()
