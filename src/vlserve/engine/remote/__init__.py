"""The remote backend: any OpenAI-compatible server (vLLM, SGLang, another vlserve) over HTTP."""

from vlserve.engine.remote.config import RemoteConfig
from vlserve.engine.remote.engine import RemoteEngine, RemotePrompt

__all__ = ["RemoteConfig", "RemoteEngine", "RemotePrompt"]
