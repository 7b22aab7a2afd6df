"""Inference backends behind one contract (``base.Engine``), chosen by ``settings.engine``."""

from vlserve.engine.base import (
    ChatTurn,
    Delta,
    Engine,
    EngineRequest,
    EngineStatus,
    MediaItem,
    ModelInfo,
    Prepared,
    SamplingParams,
    Usage,
)

__all__ = [
    "ChatTurn",
    "Delta",
    "Engine",
    "EngineRequest",
    "EngineStatus",
    "MediaItem",
    "ModelInfo",
    "Prepared",
    "SamplingParams",
    "Usage",
    "build_engine",
]


def build_engine(settings) -> Engine:  # noqa: ANN001 - Settings import kept lazy; backends import what they need
    """The backend named by ``settings.engine``: imported on use, so torch loads only for transformers."""
    if settings.engine == "transformers":
        from vlserve.engine.transformers import TransformersEngine

        return TransformersEngine(settings)
    if settings.engine == "remote":
        from vlserve.engine.remote import RemoteEngine

        return RemoteEngine.from_settings(settings)
    if settings.engine == "vllm":
        from vlserve.engine.vllm import VllmEngine

        return VllmEngine(settings)
    raise ValueError(f"unknown engine {settings.engine!r}")
