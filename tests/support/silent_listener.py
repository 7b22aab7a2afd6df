"""A loopback TCP listener that counts the connections it gets and never answers (a server that hangs).

Closing it (the end of the ``with`` block) closes every connection it held, so a client stuck on it
is released.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class SilentListener:
    url: str
    connections: int = 0
    _held: list[socket.socket] = field(default_factory=list)


@contextlib.contextmanager
def silent_listener() -> Iterator[SilentListener]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    listener = SilentListener(f"http://127.0.0.1:{server.getsockname()[1]}")
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            listener.connections += 1
            listener._held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(5)
        for connection in listener._held:
            connection.close()
        server.close()
