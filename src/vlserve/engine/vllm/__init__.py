"""The managed backend: a `vllm serve` child started, supervised and reached over loopback by vlserve."""

from vlserve.engine.vllm.engine import INSTALL_HINT, VllmEngine

__all__ = ["INSTALL_HINT", "VllmEngine"]
