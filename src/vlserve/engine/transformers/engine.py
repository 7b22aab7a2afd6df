"""The embedded backend: any local Qwen3-VL / Qwen3-VL-MoE / Qwen2.5-VL checkpoint on transformers.

bf16 on CUDA when present, float32 on CPU. Requests are batched continuously by the :class:`Scheduler`
(they join the running batch at a step boundary and leave it when they end; document pages give way to
interactive requests); model work and image processing run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

from vlserve.engine.base import Delta, EngineRequest, EngineStatus, ModelInfo, Prepared, SamplingParams
from vlserve.engine.budget import completion_budget
from vlserve.engine.capabilities import ALL_FEATURES, check_sampling_extensions, refuse_unsupported
from vlserve.engine.reasoning import with_reasoning
from vlserve.engine.transformers.checkpoint import Checkpoint, load_checkpoint, set_cpu_threads
from vlserve.engine.transformers.grammar import GrammarCache
from vlserve.engine.transformers.prompting import Prompt, PromptBuilder
from vlserve.engine.transformers.runner import HFBatchRunner
from vlserve.engine.transformers.scheduler import Scheduler
from vlserve.engine.transformers.tool_calls import with_tool_calls
from vlserve.engine.warmup import warm_up
from vlserve.errors import ClientError, ServerError, ServiceUnavailableError
from vlserve.settings import Settings
from vlserve.structured import OutputFormat

log = logging.getLogger("vlserve.engine")

SUPPORTED = ALL_FEATURES  # every optional feature in vlserve.engine.capabilities


def _loading() -> ServiceUnavailableError:
    return ServiceUnavailableError("the model is still loading", headers={"Retry-After": "5"})


class TransformersEngine:
    name = "transformers"

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
    def capacity(self) -> int:
        """A full running batch and a full queue behind it."""
        return self._settings.max_batch_size + self._settings.max_queue_size

    @property
    def scheduler(self) -> Scheduler | None:
        return self._scheduler

    def status(self) -> EngineStatus:
        if self._scheduler is None:
            return EngineStatus(detail="loading the model")
        detail = None if self._ready else "warming up"
        return EngineStatus(self._scheduler.queue_depth, self._scheduler.running, detail)

    async def start(self) -> None:
        s = self._settings
        started = time.monotonic()
        set_cpu_threads(s.cpu_threads)
        checkpoint = await asyncio.to_thread(load_checkpoint, s.model_dir(), device=s.device, dtype=s.dtype)
        self._checkpoint = checkpoint
        self._builder = PromptBuilder.for_checkpoint(
            checkpoint, s.model_dir(), min_pixels=s.min_pixels, max_pixels=s.max_pixels
        )
        budget = self._builder.budget
        max_len = min(s.max_model_len or checkpoint.max_position_embeddings, checkpoint.max_position_embeddings)
        self._info = ModelInfo(
            id=s.model_name(),
            max_model_len=max_len,
            max_images_per_request=s.max_images_per_request,
            architecture=checkpoint.architecture,
            created=self._info.created,
            min_pixels=budget.min_pixels,
            max_pixels=budget.max_pixels,
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
            s.model_name(), checkpoint.architecture, s.model_dir(), time.monotonic() - started,
            budget.min_pixels, budget.max_pixels,
        )  # fmt: skip
        if s.warmup:
            await warm_up(self)
        self._ready = True
        log.info("ready after %.1f s", time.monotonic() - started)

    async def close(self) -> None:
        self._ready = False
        if self._scheduler is not None:
            await self._scheduler.stop()

    async def prepare(self, request: EngineRequest) -> Prompt:
        if self._builder is None:
            raise _loading()
        return await asyncio.to_thread(self._builder.build_request, request)

    def _resolve(self, params: SamplingParams) -> SamplingParams:
        """The request's settings over the checkpoint's recommended ones (generation_config.json)."""
        if self._checkpoint is None:
            raise _loading()
        return params.over(self._checkpoint.default_sampling)

    def _budget(self, prompt: Prompt, params: SamplingParams) -> int:
        return completion_budget(
            prompt.num_tokens,
            params.max_tokens,
            max_model_len=self._info.max_model_len,
            default=self._settings.default_max_tokens,
        )

    async def check(self, prepared: Prepared, params: SamplingParams) -> None:
        prompt = _prompt(prepared)
        refuse_unsupported(prompt.request, params, supported=SUPPORTED, engine=self.name)
        self._check_token_ids(params)
        self._budget(prompt, params)
        if params.output is not None or prompt.request.calls_tools:  # compiled (and cached) before it can fail a batch
            opened = prompt.reasoning == "opened"
            await asyncio.to_thread(self._grammars().for_request, prompt.request, params, reasoning=opened)

    def _check_token_ids(self, params: SamplingParams) -> None:
        vocab = self._runner.grammars.vocab_size if self._runner is not None else 0
        if vocab:
            check_sampling_extensions(params, vocab_size=vocab)
        outside = sorted(t for t in params.logit_bias if not 0 <= t < vocab)
        if vocab and outside:
            raise ClientError(
                f"logit_bias names token id {outside[0]}, outside this model's vocabulary (0-{vocab - 1})",
                param="logit_bias",
                code="token_out_of_vocabulary",
            )

    async def check_output(self, output: OutputFormat) -> None:
        await asyncio.to_thread(self._grammars().compile, output)

    def _grammars(self) -> GrammarCache:
        if self._runner is None:
            raise _loading()
        return self._runner.grammars

    async def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        if self._scheduler is None:
            raise _loading()
        prompt = _prompt(prepared)
        resolved = self._resolve(params)
        max_tokens = self._budget(prompt, resolved)
        deltas = self._scheduler.stream(prompt, resolved, max_tokens)
        if prompt.reasoning is not None:  # the reasoning first: tool calls are read from the answer only
            deltas = with_reasoning(deltas, opened=prompt.reasoning == "opened")
        if prompt.request.calls_tools:
            deltas = with_tool_calls(deltas)
        counted = prompt.num_tokens
        async for delta in deltas:
            if counted is not None:  # the first delta says how long the prompt is
                delta, counted = dataclasses.replace(delta, prompt_tokens=counted), None
            yield delta


def _prompt(prepared: Prepared) -> Prompt:
    if not isinstance(prepared, Prompt):
        raise ServerError(f"a {type(prepared).__name__} was given to the transformers engine")
    return prepared
