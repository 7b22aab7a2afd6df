"""What the CPU path needs to know about the machine: native bfloat16, and how many cores are really ours.

Two defaults of torch are wrong for a server in a container:
- it sizes its thread pool from the host's cores, not the container's CPU quota, so a pod limited
  to 4 CPUs on a 64-core node runs 32 threads that the kernel throttles;
- bfloat16 is only fast where the CPU computes it (AVX-512 BF16, AMX, Arm BF16); elsewhere it is
  emulated and slower than float32.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512 BF16 and AMX; Arm's "bf16" feature


def cpu_flags(cpuinfo: str) -> set[str]:
    """Every feature flag named on a ``flags`` (x86) or ``Features`` (Arm) line of /proc/cpuinfo."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware (read from /proc/cpuinfo; False where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return bool(cpu_flags(cpuinfo) & _BF16_FLAGS)


def quota_cpus(cpu_max: str | None) -> float | None:
    """The cgroup v2 CPU quota (``cpu.max``: "QUOTA PERIOD" or "max PERIOD") in CPUs; None when unlimited."""
    if not cpu_max:
        return None
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def usable_cpus(*, affinity: int | None = None, cpu_max: str | None = None) -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup quota (rounded up), at least 1."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpu_max is None:
        cpu_max = _read("/sys/fs/cgroup/cpu.max")
    quota = quota_cpus(cpu_max)
    cores = affinity if quota is None else min(affinity, math.ceil(quota))
    return max(1, cores)
