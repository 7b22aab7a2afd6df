"""The embedded backend: any local Qwen3-VL / Qwen3-VL-MoE / Qwen2.5-VL checkpoint on transformers.

bf16 on CUDA when present, float32 on CPU. Requests are batched by the :class:`Scheduler`; model
work and image processing run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

from PIL import Image

from vlserve.engine.base import ChatTurn, Delta, ModelInfo, Prompt, SamplingParams
from vlserve.engine.checkpoint import Checkpoint, load_checkpoint
from vlserve.engine.hf_runner import HFBatchRunner
from vlserve.engine.prompting import PromptBuilder, pixel_budget
from vlserve.engine.scheduler import Scheduler
from vlserve.engine.warmup import warm_up
from vlserve.errors import ContextLengthError, ServiceUnavailableError
from vlserve.settings import Settings
from vlserve.structured import OutputFormat

log = logging.getLogger("vlserve.engine")


def completion_budget(prompt_tokens: int, requested: int | None, *, max_model_len: int, default: int) -> int:
    """How many tokens this request may generate; ContextLengthError when the prompt leaves no room."""
    room = max_model_len - prompt_tokens
    if room <= 0:
        raise ContextLengthError(
            f"the prompt is {prompt_tokens} tokens (images included) but the model's context is "
            f"{max_model_len} tokens; shorten the text or send fewer or smaller images",
            param="messages",
        )
    if requested is None:
        return min(default, room)
    if requested > room:
        raise ContextLengthError(
            f"this model's context is {max_model_len} tokens; the prompt uses {prompt_tokens} and "
            f"{requested} completion tokens were requested; lower max_tokens to at most {room}",
            param="max_tokens",
        )
    return requested


class TransformersEngine:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._checkpoint: Checkpoint | None = None
        self._builder: PromptBuilder | None = None
        self._scheduler: Scheduler | None = None
        self._runner: HFBatchRunner | None = None
        self._ready = False
        self._info = ModelInfo(
            id=settings.model_name(),
            max_model_len=settings.max_model_len or 0,
            max_images_per_request=settings.max_images_per_request,
            architecture="",
            created=int(time.time()),
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def scheduler(self) -> Scheduler | None:
        return self._scheduler

    async def start(self) -> None:
        s = self._settings
        started = time.monotonic()
        checkpoint = await asyncio.to_thread(load_checkpoint, s.model_dir(), device=s.device, dtype=s.dtype)
        self._checkpoint = checkpoint
        min_pixels, max_pixels = pixel_budget(checkpoint.image_processor, s.min_pixels, s.max_pixels)
        self._builder = PromptBuilder(
            checkpoint.tokenizer,
            checkpoint.image_processor,
            checkpoint.chat_template,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
        )
        max_len = min(s.max_model_len or checkpoint.max_position_embeddings, checkpoint.max_position_embeddings)
        self._info = ModelInfo(
            id=s.model_name(),
            max_model_len=max_len,
            max_images_per_request=s.max_images_per_request,
            architecture=checkpoint.architecture,
            created=self._info.created,
            default_sampling=checkpoint.default_sampling,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
        )
        runner = self._runner = HFBatchRunner(
            checkpoint.model, checkpoint.tokenizer, checkpoint.eos_token_ids, checkpoint.pad_token_id
        )
        self._scheduler = Scheduler(
            runner,
            max_batch_size=s.max_batch_size,
            max_queue_size=s.max_queue_size,
            batch_wait_s=s.batch_wait_ms / 1000,
        )
        self._scheduler.start()
        log.info(
            "model %s (%s) loaded from %s in %.1f s; images %d-%d pixels",
            s.model_name(), checkpoint.architecture, s.model_dir(), time.monotonic() - started, min_pixels, max_pixels,
        )  # fmt: skip
        if s.warmup:
            await warm_up(self)
        self._ready = True
        log.info("ready after %.1f s", time.monotonic() - started)

    async def close(self) -> None:
        self._ready = False
        if self._scheduler is not None:
            await self._scheduler.stop()

    async def prepare(self, turns: Sequence[ChatTurn], images: Sequence[Image.Image]) -> Prompt:
        if self._builder is None:
            raise ServiceUnavailableError("the model is still loading", headers={"Retry-After": "5"})
        return await asyncio.to_thread(self._builder.build, turns, images)

    def check_budget(self, prompt: Prompt, params: SamplingParams) -> int:
        return completion_budget(
            prompt.num_tokens,
            params.max_tokens,
            max_model_len=self._info.max_model_len,
            default=self._settings.default_max_tokens,
        )

    async def check_output(self, output: OutputFormat) -> None:
        if self._runner is None:
            raise ServiceUnavailableError("the model is still loading", headers={"Retry-After": "5"})
        await asyncio.to_thread(self._runner.grammars.compile, output)

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        if self._scheduler is None:
            raise ServiceUnavailableError("the model is still loading", headers={"Retry-After": "5"})
        max_tokens = self.check_budget(prompt, params)
        async for delta in self._scheduler.stream(prompt, params, max_tokens):
            yield delta
