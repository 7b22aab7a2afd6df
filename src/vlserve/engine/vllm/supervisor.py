"""A supervised child process: started, its output logged line by line, restarted with backoff when it
dies, stopped with SIGTERM (then SIGKILL) on request.

The child gets its own process group (Ctrl-C in a terminal reaches vlserve, which drains first, not
the child) and, on Linux, is sent SIGTERM if vlserve itself dies, so no orphaned vLLM keeps a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from vlserve.engine.background import Background
from vlserve.engine.vllm.command import ChildCommand

log = logging.getLogger("vlserve.vllm")

MAX_BACKOFF_S = 60.0
STABLE_S = 60.0  # a child that ran this long restarts after the shortest backoff again
_LINE_LIMIT = 1 << 20

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec: nothing but one system call
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    def __init__(self, name: str, command: Callable[[], ChildCommand], *, stop_timeout: float = 30.0) -> None:
        self.name = name
        self._command = command
        self._stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._task = Background(f"vlserve-{name}")
        self._stopping = False
        self.starts = 0  # how many times the child was started
        self.last_exit: str | None = None  # how the last one ended

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        """SIGTERM to the child's process group, SIGKILL after ``stop_timeout``; no restart afterwards."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            log.info("stopping %s (pid %d)", self.name, proc.pid)
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self._stop_timeout)
            except TimeoutError:
                log.warning("%s did not stop in %.0f s; killing it", self.name, self._stop_timeout)
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        await self._task.stop()

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stopping:
            started = time.monotonic()
            status = await self._run_once()
            if self._stopping:
                return
            if time.monotonic() - started > STABLE_S:
                backoff = 1.0
            self.last_exit = f"{self.name} {status}; restarting in {backoff:.0f} s"
            log.error("%s", self.last_exit)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _run_once(self) -> str:
        command = self._command()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command.argv,
                env=command.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            return f"could not be started ({exc.strerror or type(exc).__name__})"
        self._proc = proc
        self.starts += 1
        log.info("started %s (pid %d)", self.name, proc.pid)
        assert proc.stdout is not None
        pump = asyncio.create_task(self._pump(proc.stdout))
        code = await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # workers it left behind
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pump, 5)
        return f"exited with status {code}" if code >= 0 else f"was killed by signal {-code}"

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        prefix = f"[{self.name}]"
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the limit: log what there is
                line = await stream.read(_LINE_LIMIT)
            if not line:
                return
            log.info("%s %s", prefix, line.decode("utf-8", "replace").rstrip())


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
