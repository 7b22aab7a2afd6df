"""The chat service: request → images → prompt → engine → OpenAI-shaped response or SSE stream.

Everything that can be wrong with a request is checked before the first byte is sent, so a
streaming request with bad input still gets a proper 4xx status, not an error inside the stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from PIL import Image

from vlserve.api.content import ImageRef, parse_messages
from vlserve.api.protocol import ChatCompletionRequest, usage
from vlserve.engine.base import ChatTurn, Engine, Prompt, SamplingParams
from vlserve.errors import ClientError, ModelOutputError, NotFoundError, ServerError, VLServeError, error_body
from vlserve.media import ImageFetcher, load_image_url
from vlserve.settings import Settings
from vlserve.structured import OutputFormat, parse_response_format, validate_output


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: tuple[int, ...] = ()


def sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def answer_error(text: str, finish_reason: str, output: OutputFormat | None) -> ModelOutputError | None:
    """The error for a finished answer that breaks the requested format (a cut-off one is the client's call)."""
    if output is None or finish_reason != "stop":
        return None
    problem = validate_output(text, output)
    if problem is None:
        return None
    return ModelOutputError(f"{problem}; the grammar cannot enforce every schema keyword", param="response_format")


class ChatService:
    def __init__(self, engine: Engine, fetcher: ImageFetcher, settings: Settings) -> None:
        self.engine = engine
        self._fetcher = fetcher
        self._limits = settings.image_limits()
        self._max_images = settings.max_images_per_request

    # --- request checks ------------------------------------------------------------------
    def check_model(self, name: str | None) -> str:
        served = self.engine.info.id
        if name is not None and name != served:
            raise NotFoundError(
                f"the model {name!r} does not exist; this server serves {served!r}",
                param="model",
                code="model_not_found",
            )
        return served

    def sampling(self, request: ChatCompletionRequest) -> SamplingParams:
        if request.n != 1:
            raise ClientError("n > 1 is not supported; send separate requests", param="n")
        response_format = request.response_format
        output = parse_response_format(None if response_format is None else response_format.model_dump())
        return self.engine.info.default_sampling.merge(
            output=output,
            max_tokens=request.max_completion_tokens or request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=None if request.top_k is None else max(request.top_k, 0),
            seed=request.seed,
            stop=request.stop_sequences(),
        )

    # --- inputs ----------------------------------------------------------------------------
    async def load_images(self, refs: Sequence[ImageRef]) -> list[Image.Image]:
        return list(
            await asyncio.gather(
                *(load_image_url(r.url, fetcher=self._fetcher, limits=self._limits, param=r.param) for r in refs)
            )
        )

    async def prepare_chat(self, request: ChatCompletionRequest) -> Prompt:
        turns, refs = parse_messages(request.messages, max_images=self._max_images)
        return await self.prepare(turns, await self.load_images(refs))

    async def prepare(self, turns: Sequence[ChatTurn], images: Sequence[Image.Image]) -> Prompt:
        return await self.engine.prepare(turns, images)

    # --- generation --------------------------------------------------------------------------
    async def check(self, prompt: Prompt, params: SamplingParams) -> None:
        """Everything about the request the engine must accept before generation starts."""
        self.engine.check_budget(prompt, params)
        if params.output is not None:
            await self.engine.check_output(params.output)

    async def complete(self, prompt: Prompt, params: SamplingParams) -> Completion:
        await self.check(prompt, params)
        pieces: list[str] = []
        last = None
        async for delta in self.engine.generate(prompt, params):
            pieces.append(delta.text)
            last = delta
        if last is None or last.finish_reason is None:
            raise ServerError("generation ended without a result")
        text = "".join(pieces)
        error = answer_error(text, last.finish_reason, params.output)
        if error is not None:
            raise error
        return Completion(text, last.finish_reason, prompt.num_tokens, last.completion_tokens, last.token_ids)

    def chat_response(self, completion: Completion, request_id: str, *, token_ids: bool = False) -> dict:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": completion.finish_reason,
            "logprobs": None,
        }
        if token_ids:
            choice["token_ids"] = list(completion.token_ids)
        return {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.engine.info.id,
            "choices": [choice],
            "usage": usage(completion.prompt_tokens, completion.completion_tokens),
        }

    async def stream(
        self, prompt: Prompt, params: SamplingParams, request_id: str, *, include_usage: bool
    ) -> AsyncIterator[str]:
        """SSE chunks; the final chunk carries ``finish_reason`` and usage. Closing it cancels generation."""
        await self.check(prompt, params)  # raise before the response starts
        return self._stream(prompt, params, request_id, include_usage)

    async def _stream(
        self, prompt: Prompt, params: SamplingParams, request_id: str, include_usage: bool
    ) -> AsyncIterator[str]:
        base = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.engine.info.id,
        }

        def chunk(delta: dict, finish: str | None = None, **extra: object) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return sse({**base, "choices": [choice], **extra})

        yield chunk({"role": "assistant", "content": ""})
        generations = self.engine.generate(prompt, params)
        text = []
        try:
            async for delta in generations:
                text.append(delta.text)
                if delta.finish_reason is None:
                    yield chunk({"content": delta.text})
                    continue
                error = answer_error("".join(text), delta.finish_reason, params.output)
                if error is not None:  # the text so far, then the error instead of a finish
                    if delta.text:
                        yield chunk({"content": delta.text})
                    raise error
                counts = usage(prompt.num_tokens, delta.completion_tokens)
                yield chunk({"content": delta.text} if delta.text else {}, delta.finish_reason, usage=counts)
                if include_usage:
                    yield sse({**base, "choices": [], "usage": counts})
        except VLServeError as exc:
            yield sse(error_body(exc))
        except Exception:  # noqa: BLE001 - an unexpected failure still ends the stream cleanly
            yield sse(error_body(ServerError("generation failed; see the server log")))
        finally:
            await generations.aclose()
        yield sse("[DONE]")
