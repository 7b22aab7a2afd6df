"""The GPU gauges over NVML. No GPU here, so NVML is a stand-in module with pynvml's call surface: the one
place a fake is the only way to see the collector's output."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vlserve.observability.gpu import GPU_MEMORY_TOTAL, GPU_MEMORY_USED, GPU_UTILIZATION, open_gpu_collector, watch_gpus

GIB = 2**30


class NVMLError(Exception):
    pass


class FakeNVML:
    """Two GPUs; ``broken`` holds the indices whose readings fail, ``init_error`` makes nvmlInit fail."""

    def __init__(self, count: int = 2, init_error: Exception | None = None) -> None:
        self.count = count
        self.init_error = init_error
        self.broken: set[int] = set()

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        if handle in self.broken:
            raise NVMLError("GPU is lost")
        return SimpleNamespace(gpu=40 + 50 * handle, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=(handle + 1) * GIB, total=80 * GIB, free=(79 - handle) * GIB)


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels.get("gpu", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_gpu_is_reported_with_its_index_utilisation_and_memory():
    registry = CollectorRegistry()
    assert watch_gpus(registry, FakeNVML())
    got = samples(registry)
    assert got == {
        (GPU_UTILIZATION, "0"): 0.4,
        (GPU_UTILIZATION, "1"): 0.9,
        (GPU_MEMORY_USED, "0"): 1 * GIB,
        (GPU_MEMORY_USED, "1"): 2 * GIB,
        (GPU_MEMORY_TOTAL, "0"): 80 * GIB,
        (GPU_MEMORY_TOTAL, "1"): 80 * GIB,
    }


def test_a_gpu_that_cannot_be_read_is_left_out_and_the_scrape_still_answers(caplog):
    nvml = FakeNVML()
    registry = CollectorRegistry()
    watch_gpus(registry, nvml)
    nvml.broken.add(1)
    with caplog.at_level(logging.INFO, logger="vlserve.metrics"):
        for _ in range(3):
            got = samples(registry)
            assert (GPU_UTILIZATION, "0") in got and (GPU_UTILIZATION, "1") not in got
        nvml.broken.clear()
        assert (GPU_UTILIZATION, "1") in samples(registry)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("WARNING", "GPU 1: NVML could not read it (GPU is lost); left out of /metrics"),
        ("INFO", "GPU 1: NVML reads it again"),
    ]  # once, not at every scrape


def test_without_a_driver_or_a_gpu_nothing_is_registered_and_nothing_is_warned(caplog):
    with caplog.at_level(logging.INFO, logger="vlserve.metrics"):
        assert open_gpu_collector(FakeNVML(init_error=NVMLError("NVML Shared Library Not Found"))) is None
        assert open_gpu_collector(FakeNVML(count=0)) is None
        registry = CollectorRegistry()
        assert not watch_gpus(registry)  # the real pynvml, on this machine without a GPU
    assert caplog.records == []
    assert generate_latest(registry) == b""
