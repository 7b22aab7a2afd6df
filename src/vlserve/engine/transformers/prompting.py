"""Turning chat turns and decoded images into model inputs, with the checkpoint's own template.

The template renders one ``<|image_pad|>`` per image; each is expanded to the number of visual
tokens the image processor produced for that image (``grid_t * grid_h * grid_w / merge**2``),
and ``mm_token_type_ids`` marks those positions (1, videos' 2) for the model's 3-D rotary positions.
A video's ``<|vision_start|><|video_pad|><|vision_end|>`` becomes its frames' tokens (video_inputs).
A request with more than one image or video renders with the template's ``add_vision_id`` (vision_ids).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from vlserve.engine.base import ChatTurn, EngineRequest, MediaItem, Prepared
from vlserve.engine.checkpoint_files import image_budget
from vlserve.engine.reasoning import answer_starts_in_reasoning, template_thinks
from vlserve.engine.transformers.cpu import usable_cpus
from vlserve.engine.transformers.image_inputs import ImageGeometry, image_inputs
from vlserve.engine.transformers.video_inputs import (
    TIMESTAMPED,
    VIDEO_PAD,
    VIDEO_WRAPPER,
    VideoGeometry,
    placeholder,
    process_video,
    video_model_inputs,
)
from vlserve.engine.vision_ids import template_variables
from vlserve.errors import ClientError
from vlserve.media.resize import ImageBudget

if TYPE_CHECKING:
    from pathlib import Path

    from vlserve.engine.transformers.checkpoint import Checkpoint

IMAGE_PAD = "<|image_pad|>"
RESERVED_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
_MEDIA = re.compile(f"({re.escape(IMAGE_PAD)}|{re.escape(VIDEO_WRAPPER)})")  # one image or video, in order
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
    # pixel_values, image_grid_thw; pixel_values_videos, video_grid_thw (and Qwen2.5-VL's second_per_grid_ts)
    image_inputs: dict[str, Any] = field(default_factory=dict)
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
        model_type: str = "qwen3_vl",
        fast_images: bool = True,  # False: every image through the checkpoint's own image processor
    ) -> None:
        self._tokenizer = tokenizer
        self._image_processor = image_processor
        self._chat_template = chat_template
        self._size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        factor = int(getattr(image_processor, "patch_size", 16)) * self.merge_size
        self.budget = ImageBudget(min_pixels, max_pixels, factor)
        self.image_token_id: int = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.video_token_id: int = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
        self._model_type = model_type
        self._video = VideoGeometry.of(image_processor)
        # None: a processor this engine does not reproduce (image_inputs), so transformers' processor runs
        self.image_geometry = ImageGeometry.of(image_processor) if fast_images else None
        # a request's images side by side (its threads start at the first request with several images)
        self._pool = ThreadPoolExecutor(max_workers=usable_cpus(), thread_name_prefix="vlserve-images")
        self.thinks = template_thinks(chat_template, tokenizer.get_vocab())  # a reasoning model

    @classmethod
    def for_checkpoint(
        cls, checkpoint: Checkpoint, model_dir: Path, *, min_pixels: int | None, max_pixels: int | None
    ) -> PromptBuilder:
        """The builder for a loaded checkpoint, its pixel budget from the settings or else its processor's."""
        budget = image_budget(model_dir, min_pixels=min_pixels, max_pixels=max_pixels)
        return cls(
            checkpoint.tokenizer,
            checkpoint.image_processor,
            checkpoint.chat_template,
            min_pixels=budget.min_pixels,
            max_pixels=budget.max_pixels,
            model_type=checkpoint.model_type,
        )

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
            return self.render(request.turns, template_kwargs=template_variables(request))
        if not self.renders_tools:
            raise ClientError("this model's chat template does not render tools, so it cannot call them", param="tools")
        return self.render(request.turns, request.tools, template_variables(request))

    def _misplaced_images(self, request: EngineRequest, placed: int) -> ClientError:
        """The error for images the chat template did not place, naming the first message that lost some: the
        one whose images the conversation up to it does not show (Qwen3-VL's template drops a system
        message's images, for one). The API refuses images outside user and tool messages before any work;
        this catches what a checkpoint's own template drops anyway."""
        wanted = f"the chat template placed {placed} of the request's {len(request.media)} images and videos"
        tools = request.tools if request.calls_tools else ()
        expected = 0
        for index, turn in enumerate(request.turns):
            images = [j for j, part in enumerate(turn.parts) if part["type"] in ("image", "video")]
            expected += len(images)
            if not images:
                continue
            rendered = self.render(request.turns[: index + 1], tools, template_variables(request))
            shown = len(_MEDIA.findall(rendered))
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
        images = [item.image for item in request.media if item.kind == "image"]
        videos = [item for item in request.media if item.kind == "video"]
        for image in images:
            self.budget.size_for(*image.size, param="messages")  # refuse what the processor cannot take
        text = self._render_request(request)
        reasoning = None
        if self.thinks:
            reasoning = "opened" if answer_starts_in_reasoning(text) else "optional"
        pieces = _MEDIA.split(text)  # text, marker, text, marker, …, text
        markers = ["image" if marker == IMAGE_PAD else "video" for marker in pieces[1::2]]
        if markers != [item.kind for item in request.media]:
            raise self._misplaced_images(request, len(markers))
        inputs, image_texts, video_texts = self._media_inputs(images, videos)
        out = [pieces[0]]
        image_iter, video_iter = iter(image_texts), iter(video_texts)
        for marker, piece in zip(pieces[1::2], pieces[2::2], strict=True):
            out += [next(image_iter) if marker == IMAGE_PAD else next(video_iter), piece]
        input_ids = self._tokenizer("".join(out), add_special_tokens=False)["input_ids"]
        kinds = {self.image_token_id: 1, self.video_token_id: 2}
        type_ids = [kinds.get(token, 0) for token in input_ids]
        visual = sum(1 for kind in type_ids if kind)
        return Prompt(request, visual, input_ids, type_ids, inputs, reasoning)

    def _media_inputs(
        self, images: Sequence[Image.Image], videos: Sequence[MediaItem]
    ) -> tuple[dict[str, Any], list[str], list[str]]:
        """The model's pixel inputs, and the prompt text of each image and each video, in order."""
        inputs: dict[str, Any] = {}
        image_texts: list[str] = []
        if images:
            inputs = self._image_inputs(images)
            grid = inputs["image_grid_thw"]
            image_texts = [IMAGE_PAD * int(n) for n in grid.prod(-1) // (self.merge_size**2)]
        video_texts: list[str] = []
        if videos:
            processed_videos = [process_video(item, self._video) for item in videos]
            timestamped = self._model_type in TIMESTAMPED
            video_texts = [placeholder(v, self.merge_size, timestamped=timestamped) for v in processed_videos]
            fps = [item.fps for item in videos]
            inputs |= video_model_inputs(processed_videos, fps, self._video, model_type=self._model_type)
        return inputs, image_texts, video_texts

    def _image_inputs(self, images: Sequence[Image.Image]) -> dict[str, Any]:
        """``pixel_values`` and ``image_grid_thw``: resized once and patched here (image_inputs), or by the
        checkpoint's processor when its configuration asks for something else."""
        if self.image_geometry is None:
            processed = self._image_processor(images=list(images), size=self._size, return_tensors="pt")
            return {"pixel_values": processed["pixel_values"], "image_grid_thw": processed["image_grid_thw"]}
        return image_inputs(images, self.budget, self.image_geometry, pool=self._pool)

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
