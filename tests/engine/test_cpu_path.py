"""The CPU path's choices: which dtype ``auto`` means on which CPU, and how many threads torch may use."""

from __future__ import annotations

import pytest
import torch

from vlserve.engine.transformers.checkpoint import resolve_dtype, stored_dtype
from vlserve.engine.transformers.cpu import native_bfloat16, quota_cpus, usable_cpus

CPU = torch.device("cpu")

EPYC_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
XEON_AMX = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(("cpuinfo", "native"), [(EPYC_AVX2, False), (XEON_AMX, True), (GRAVITON3, True), ("", False)])
def test_native_bfloat16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert native_bfloat16(cpuinfo) is native


def test_auto_dtype_is_bfloat16_on_a_cpu_only_where_it_is_computed_natively():
    assert resolve_dtype("auto", CPU, stored="bfloat16", cpu_bf16=True) is torch.bfloat16
    # emulated bfloat16 prefills 6x slower than float32 on an AVX2 EPYC (docs/performance.md)
    assert resolve_dtype("auto", CPU, stored="bfloat16", cpu_bf16=False) is torch.float32
    # a float32 checkpoint (the demo model) stays float32: its answers are checked against float32 references
    assert resolve_dtype("auto", CPU, stored="float32", cpu_bf16=True) is torch.float32
    assert resolve_dtype("auto", torch.device("cuda"), stored="float32") is torch.bfloat16
    assert resolve_dtype("float32", CPU, stored="bfloat16", cpu_bf16=True) is torch.float32


def test_stored_dtype_is_read_from_either_config_key_or_the_text_config():
    assert stored_dtype({"torch_dtype": "bfloat16"}) == "bfloat16"
    assert stored_dtype({"text_config": {"dtype": "bfloat16"}}) == "bfloat16"
    assert stored_dtype({"dtype": "float32", "text_config": {"dtype": "bfloat16"}}) == "float32"
    assert stored_dtype({}) is None


def test_threads_follow_the_container_quota_not_the_host():
    assert quota_cpus("max 100000") is None
    assert quota_cpus("250000 100000") == 2.5
    assert quota_cpus("garbage") is None
    assert usable_cpus(affinity=64, cpu_max="400000 100000") == 4
    assert usable_cpus(affinity=64, cpu_max="250000 100000") == 3
    assert usable_cpus(affinity=2, cpu_max="400000 100000") == 2
    assert usable_cpus(affinity=8, cpu_max="max 100000") == 8
    assert usable_cpus(affinity=8, cpu_max="50000 100000") == 1
