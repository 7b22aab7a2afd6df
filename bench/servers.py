"""`vlserve serve` subprocesses on free loopback ports, for the benchmarks that measure over HTTP.

Both the upstream and the gateway run at log level warning, so per-request log lines cost neither, and
with the response cache off (repeated requests would be answered from it), unless a benchmark turns it on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_headers() -> dict[str, str]:
    """``Authorization: Bearer $VLSERVE_API_KEY`` when that is set (a server with auth on needs it), else none."""
    key = os.environ.get("VLSERVE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def vlserve(*args: str, timeout: float = 300, **settings: object) -> Iterator[Server]:
    """A running `vlserve serve ARGS` (settings as VLSERVE_* variables), once it is ready."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="vlserve-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
        env.update({"VLSERVE_DATA_DIR": tmp, "VLSERVE_LOG_LEVEL": "warning", "VLSERVE_DOCUMENT_WORKER": "false"})
        env["VLSERVE_CACHE"] = "false"  # benchmarks repeat requests to measure the engine path (cache=True: on)
        env.update({f"VLSERVE_{k.upper()}": str(v) for k, v in settings.items()})
        log = (Path(tmp) / "server.log").open("w")
        command = [sys.executable, "-m", "vlserve.cli", "serve", "--port", str(port), *args]
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited: {(Path(tmp) / 'server.log').read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("server not ready")
                time.sleep(0.2)
            yield Server(url, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
