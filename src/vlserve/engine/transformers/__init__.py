"""The in-process backend: a local checkpoint run by transformers, batched by an asyncio scheduler.

Token ids and pixel values exist only here; every other backend sees chat turns and media items.
"""

from vlserve.engine.transformers.engine import TransformersEngine

__all__ = ["TransformersEngine"]
