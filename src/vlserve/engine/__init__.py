"""Inference backends behind one protocol, and the scheduler that batches requests for them."""

from vlserve.engine.base import ChatTurn, Delta, Engine, ModelInfo, Prompt, SamplingParams

__all__ = ["ChatTurn", "Delta", "Engine", "ModelInfo", "Prompt", "SamplingParams", "build_engine"]


def build_engine(settings) -> Engine:  # noqa: ANN001 - Settings import kept lazy (torch is heavy)
    """The backend named by ``settings.engine``."""
    if settings.engine == "transformers":
        from vlserve.engine.transformers_engine import TransformersEngine

        return TransformersEngine(settings)
    raise ValueError(f"unknown engine {settings.engine!r}")
