"""The engine contract: what the HTTP layer may ask of any inference backend.

The API depends only on :class:`Engine`, so it is tested with a fake engine and every backend
(transformers today; vLLM and remote fleets later) is swapped by configuration alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

from vlserve.structured import OutputFormat

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class ChatTurn:
    """One message, content already split into parts: ``{"type": "text", "text": …}`` or ``{"type": "image"}``.

    Image parts are placeholders; the decoded images travel separately, in order of appearance.
    """

    role: str
    parts: tuple[dict[str, str], ...]

    @classmethod
    def user(cls, text: str, num_images: int = 0) -> ChatTurn:
        """A user message with ``num_images`` images followed by the question, as the model card shows."""
        return cls("user", (*({"type": "image"} for _ in range(num_images)), {"type": "text", "text": text}))


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None  # None: the server default, capped by the context left
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = ()
    output: OutputFormat | None = None  # a JSON answer (under a schema), enforced while decoding

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def merge(self, **overrides: object) -> SamplingParams:
        """These defaults with every override that is not None applied (a request over the checkpoint's)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Prompt:
    """A tokenised request ready for the model: token ids plus the processed images."""

    input_ids: list[int]
    mm_token_type_ids: list[int]
    image_inputs: dict[str, Any] = field(default_factory=dict)  # pixel_values, image_grid_thw
    num_images: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class Delta:
    """A piece of generated text; the last one of a request carries ``finish_reason``."""

    text: str
    finish_reason: FinishReason | None = None
    completion_tokens: int = 0
    token_ids: tuple[int, ...] = ()  # every generated token, on the last delta only


@dataclass(frozen=True)
class ModelInfo:
    id: str
    max_model_len: int
    max_images_per_request: int
    architecture: str
    created: int
    default_sampling: SamplingParams = SamplingParams()  # the checkpoint's generation_config
    min_pixels: int = 0  # the per-image pixel budget images are resized into
    max_pixels: int = 0


@runtime_checkable
class Engine(Protocol):
    """An inference backend serving one model."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def ready(self) -> bool:
        """True once the model is loaded and a warm-up generation has completed."""
        ...

    async def start(self) -> None:
        """Load the model and warm it up; returns when ready."""
        ...

    async def close(self) -> None: ...

    async def prepare(self, turns: Sequence[ChatTurn], images: Sequence[Image.Image]) -> Prompt:
        """Render the chat template and process images (off the event loop). Raises ClientError."""
        ...

    def check_budget(self, prompt: Prompt, params: SamplingParams) -> int:
        """The completion token limit for this request; raises ContextLengthError when it cannot fit."""
        ...

    async def check_output(self, output: OutputFormat) -> None:
        """Get ready to enforce ``output`` while decoding; ClientError when it cannot be enforced."""
        ...

    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        """Stream the completion. Closing the iterator early cancels the generation."""
        ...
