"""GPU utilisation and memory on ``/metrics``, read through NVML (``nvidia-ml-py``) at every scrape.

Only when NVML starts and finds a GPU is the collector registered; on a machine without an NVIDIA
driver the families are simply absent (one debug line says why). One device whose reading fails is
left out of that scrape (a warning the first time), so ``/metrics`` always answers. The ``gpu`` label
is the device index NVML gives, which follows ``nvidia-smi``, not ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("vlserve.metrics")

GPU_UTILIZATION = "vlserve_gpu_utilization_ratio"
GPU_MEMORY_USED = "vlserve_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "vlserve_gpu_memory_total_bytes"
GPU_METRICS = (GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL)


class GpuCollector(Collector):
    """Per-GPU gauges from ``nvml`` (the ``pynvml`` module of nvidia-ml-py, already initialised)."""

    def __init__(self, nvml: Any, count: int) -> None:
        self._nvml = nvml
        self._count = count
        self._failing: set[int] = set()  # devices whose last reading failed (warned once until they answer)

    def describe(self) -> Iterator[Metric]:
        """The families' names, without reading the GPUs (the registry asks when the collector is added)."""
        return iter(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        utilization = GaugeMetricFamily(
            GPU_UTILIZATION, "Share of the last sample period a kernel ran on the GPU (0-1)", labels=["gpu"]
        )
        used = GaugeMetricFamily(GPU_MEMORY_USED, "GPU memory in use, bytes", labels=["gpu"])
        total = GaugeMetricFamily(GPU_MEMORY_TOTAL, "GPU memory installed, bytes", labels=["gpu"])
        return utilization, used, total

    def collect(self) -> Iterator[Metric]:
        utilization, used, total = self._families()
        for index in range(self._count):
            reading = self._read(index)
            if reading is None:
                continue
            busy, memory = reading
            label = [str(index)]
            utilization.add_metric(label, busy / 100)
            used.add_metric(label, memory.used)
            total.add_metric(label, memory.total)
        yield from (utilization, used, total)

    def _read(self, index: int) -> tuple[float, Any] | None:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            busy = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except Exception as exc:  # noqa: BLE001 - a driver error must not break /metrics
            if index not in self._failing:
                log.warning("GPU %d: NVML could not read it (%s); left out of /metrics", index, exc)
            self._failing.add(index)
            return None
        if index in self._failing:
            log.info("GPU %d: NVML reads it again", index)
            self._failing.discard(index)
        return busy, memory


def open_gpu_collector(nvml: ModuleType | Any | None = None) -> GpuCollector | None:
    """A collector over every GPU NVML finds, or None (no driver, no library, no GPU)."""
    try:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py: pure Python, loads libnvidia-ml at nvmlInit
        nvml.nvmlInit()
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:  # noqa: BLE001 - no NVIDIA driver is the normal case on a CPU machine
        log.debug("no GPU metrics: NVML is not available (%s)", exc)
        return None
    if count == 0:
        log.debug("no GPU metrics: NVML finds no GPU")
        return None
    log.debug("GPU metrics for %d GPU(s) from NVML", count)
    return GpuCollector(nvml, count)


def watch_gpus(registry: CollectorRegistry, nvml: ModuleType | Any | None = None) -> bool:
    """Register the GPU gauges in ``registry`` when NVML finds a GPU; whether it did."""
    collector = open_gpu_collector(nvml)
    if collector is None:
        return False
    registry.register(collector)
    return True
