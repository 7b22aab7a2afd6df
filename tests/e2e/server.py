"""A real `vlserve serve` subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

# Small pixel budgets keep CPU prefill fast; the image path is the same at any size.
FAST_IMAGES = {"min_pixels": 16 * 32 * 32, "max_pixels": 256 * 32 * 32}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        model_dir: Path | None,
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        command: Sequence[str] = (sys.executable, "-m", "vlserve.cli"),
        cwd: Path | None = None,
        **settings: object,
    ) -> None:
        """``command`` runs the CLI (another environment's ``vlserve``, say), from ``cwd``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
        env.update({f"VLSERVE_{k.upper()}": str(v) for k, v in settings.items()})
        env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra})
        self._log = log_path.open("w")
        model = ["--model", str(model_dir)] if model_dir is not None else []
        self.proc = subprocess.Popen(
            [*command, "serve", *model, "--port", str(self.port)],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return self.log()
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the server log:\n{self.log()[-3000:]}")

    def wait_status(self, path: str, status: int, timeout: float = 60) -> httpx.Response:
        """Poll ``path`` until it answers ``status``; the last response."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = httpx.get(f"{self.url}{path}", timeout=2)
                if response.status_code == status:
                    return response
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{path} never answered {status}:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def wait_ready(self, timeout: float = 180) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def signal_stop(self) -> None:
        """SIGTERM, without waiting: servers told together stop together (``stop`` then waits)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def stopped_after(log: str) -> list[int]:
    """Token counts of the generations the server stopped because their client went away."""
    return [int(line.split("stopped after ")[1].split()[0]) for line in log.splitlines() if "stopped after" in line]


def stopped_for(server: ServerProcess, request_id: str, timeout: float = 30) -> int:
    """The token count at which ``server`` stopped the generation of ``request_id`` (sent as a 32-hex-digit
    ``X-Request-Id``, so it is the trace id on its log lines) because its client went away. A shared server's
    log holds other tests' lines: only this request's counts."""
    deadline = time.monotonic() + timeout
    while not (stops := stopped_after("\n".join(line for line in server.log().splitlines() if request_id in line))):
        assert time.monotonic() < deadline, f"{request_id} was never stopped:\n{server.log()[-3000:]}"
        time.sleep(0.1)
    return stops[-1]


def abandon_stream(url: str, body: dict, *, chunks: int = 6, headers: dict[str, str] | None = None) -> None:
    """Start a streamed chat answer at ``url``, read ``chunks`` events, then hang up like a client that left."""
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()
        for _ in range(chunks):
            next(lines)
