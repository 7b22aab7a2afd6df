"""Turning chat turns and decoded images into model inputs, with the checkpoint's own template.

The template renders one ``<|image_pad|>`` per image; each is expanded to the number of visual
tokens the image processor produced for that image (``grid_t * grid_h * grid_w / merge**2``),
and ``mm_token_type_ids`` marks those positions for the model's 3-D rotary positions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from PIL import Image

from vlserve.engine.base import ChatTurn, EngineRequest, Prepared
from vlserve.engine.reasoning import answer_starts_in_reasoning, template_thinks
from vlserve.errors import ClientError
from vlserve.media.resize import ImageBudget

IMAGE_PAD = "<|image_pad|>"
RESERVED_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
_PROBE_TOOL = {"type": "function", "function": {"name": "vlserve_probe", "parameters": {"type": "object"}}}


def _message(turn: ChatTurn) -> dict[str, Any]:
    """A turn as chat templates take it: tool-call arguments as objects (as transformers documents them)."""
    message: dict[str, Any] = {"role": turn.role, "content": [dict(p) for p in turn.parts]}
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
            for c in turn.tool_calls
        ]
    if turn.tool_call_id is not None:
        message["tool_call_id"] = turn.tool_call_id
    return message


@dataclass
class Prompt(Prepared):
    """A tokenised request ready for the model: token ids plus the processed images."""

    input_ids: list[int] = field(default_factory=list)
    mm_token_type_ids: list[int] = field(default_factory=list)
    image_inputs: dict[str, Any] = field(default_factory=dict)  # pixel_values, image_grid_thw
    # A reasoning model's answer: "opened" when the prompt left a <think> block open (the answer begins with
    # reasoning), "optional" when the model may open one itself; None when the answer is not split.
    reasoning: Literal["opened", "optional"] | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def num_images(self) -> int:
        return self.request.num_images


class PromptBuilder:
    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        chat_template: str,
        *,
        min_pixels: int,
        max_pixels: int,
    ) -> None:
        self._tokenizer = tokenizer
        self._image_processor = image_processor
        self._chat_template = chat_template
        self._size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        factor = int(getattr(image_processor, "patch_size", 16)) * self.merge_size
        self._budget = ImageBudget(min_pixels, max_pixels, factor)
        self.image_token_id: int = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.thinks = template_thinks(chat_template, tokenizer.get_vocab())  # a reasoning model

    def render(
        self,
        turns: Sequence[ChatTurn],
        tools: Sequence[Mapping[str, Any]] = (),
        template_kwargs: Mapping[str, Any] | None = None,  # the request's chat_template_kwargs, checked
    ) -> str:
        messages = []
        for index, turn in enumerate(turns):
            for part in turn.parts:
                if part["type"] == "text" and any(t in part["text"] for t in RESERVED_TOKENS):
                    raise ClientError(
                        "text must not contain the model's reserved vision tokens "
                        f"({', '.join(RESERVED_TOKENS)}); send images as image_url parts",
                        param=f"messages[{index}].content",
                    )
            messages.append(_message(turn))
        return self._tokenizer.apply_chat_template(
            messages,
            tools=[dict(t) for t in tools] or None,
            chat_template=self._chat_template,
            tokenize=False,
            add_generation_prompt=True,
            **dict(template_kwargs or {}),
        )

    @cached_property
    def renders_tools(self) -> bool:
        """Whether the checkpoint's chat template shows tools to the model at all."""
        probe = [ChatTurn.user("?")]
        return self.render(probe, [_PROBE_TOOL]) != self.render(probe)

    def _render_request(self, request: EngineRequest) -> str:
        if not request.calls_tools:
            return self.render(request.turns, template_kwargs=request.chat_template_kwargs)
        if not self.renders_tools:
            raise ClientError("this model's chat template does not render tools, so it cannot call them", param="tools")
        return self.render(request.turns, request.tools, request.chat_template_kwargs)

    def _misplaced_images(self, request: EngineRequest, placed: int) -> ClientError:
        """The error for images the chat template did not place, naming the first message that lost some: the
        one whose images the conversation up to it does not show (Qwen3-VL's template drops a system
        message's images, for one). The API refuses images outside user and tool messages before any work;
        this catches what a checkpoint's own template drops anyway."""
        wanted = f"the chat template placed {placed} of the request's {request.num_images} images"
        tools = request.tools if request.calls_tools else ()
        expected = 0
        for index, turn in enumerate(request.turns):
            images = [j for j, part in enumerate(turn.parts) if part["type"] == "image"]
            expected += len(images)
            if not images:
                continue
            shown = self.render(request.turns[: index + 1], tools, request.chat_template_kwargs).count(IMAGE_PAD)
            if shown < expected:
                return ClientError(
                    f"{wanted}: it drops the images of a {turn.role} message; send images in user messages",
                    param=f"messages[{index}].content[{images[0]}]",
                    code="unsupported_content_type",
                )
        return ClientError(f"{wanted}; send images in user messages", param="messages")

    def build(self, turns: Sequence[ChatTurn], images: Sequence[Image.Image]) -> Prompt:
        return self.build_request(EngineRequest.chat(turns, images))

    def build_request(self, request: EngineRequest) -> Prompt:
        if request.prompt is not None:
            return self.build_text(request)
        images = [item.image for item in request.media]
        for image in images:
            self._budget.size_for(*image.size, param="messages")  # refuse what the processor cannot take
        text = self._render_request(request)
        reasoning = None
        if self.thinks:
            reasoning = "opened" if answer_starts_in_reasoning(text) else "optional"
        pieces = text.split(IMAGE_PAD)
        if len(pieces) - 1 != len(images):
            raise self._misplaced_images(request, len(pieces) - 1)
        image_inputs: dict[str, Any] = {}
        if images:
            processed = self._image_processor(images=list(images), size=self._size, return_tensors="pt")
            grid = processed["image_grid_thw"]
            counts = [int(n) for n in grid.prod(-1) // (self.merge_size**2)]
            text = pieces[0] + "".join(IMAGE_PAD * n + piece for n, piece in zip(counts, pieces[1:], strict=True))
            image_inputs = {"pixel_values": processed["pixel_values"], "image_grid_thw": grid}
        input_ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        type_ids = [1 if token == self.image_token_id else 0 for token in input_ids]
        return Prompt(request, sum(type_ids), input_ids, type_ids, image_inputs, reasoning)

    def build_text(self, request: EngineRequest) -> Prompt:
        """A raw text prompt (/v1/completions) tokenised as it is, as vLLM does: no chat template, no images."""
        text = request.prompt or ""
        if any(t in text for t in RESERVED_TOKENS):
            raise ClientError(
                f"the prompt must not contain the model's reserved vision tokens ({', '.join(RESERVED_TOKENS)}); "
                "text completions take no images",
                param="prompt",
            )
        input_ids = self._tokenizer(text)["input_ids"]
        return Prompt(request, 0, input_ids, [0] * len(input_ids))
