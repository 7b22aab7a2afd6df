"""HTTP-free use cases shared by the API, the document worker and the CLI."""

from vlserve.service.generation import Completion, GenerationService

__all__ = ["Completion", "GenerationService"]
