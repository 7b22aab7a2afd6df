"""The engine contract: what the service layer may ask of any inference backend.

A request is backend-neutral: chat turns, media items, tools, and :class:`SamplingParams`. Each backend
owns how it turns that into a prompt (``prepare``): token ids and pixel values for the in-process
transformers backend, an OpenAI request body with inline images for a remote or managed vLLM. The
service checks a prepared request (``check``) before anything is sent to the client, then streams
:class:`Delta` s from ``generate``; the last one carries the finish reason and the :class:`Usage`.

This module imports neither torch nor transformers, so the API and its tests run without them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

from vlserve.media.images import LoadedImage
from vlserve.structured import OutputFormat

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class ToolCall:
    """A function call made by the assistant: ``arguments`` is the JSON object as a string, as OpenAI sends it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatTurn:
    """One message, content already split into parts: ``{"type": "text", "text": …}`` or ``{"type": "image"}``.

    Image parts are placeholders; the media items travel separately, in order of appearance. An
    assistant turn may carry the tool calls it made; a ``tool`` turn answers the call ``tool_call_id``.
    """

    role: str
    parts: tuple[dict[str, str], ...]
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @classmethod
    def user(cls, text: str, num_images: int = 0) -> ChatTurn:
        """A user message with ``num_images`` images followed by the question, as the model card shows."""
        return cls("user", (*({"type": "image"} for _ in range(num_images)), {"type": "text", "text": text}))


@dataclass(frozen=True)
class MediaItem:
    """One decoded input of a request, in order of appearance: an image, or a video's sampled frames.

    A video keeps its first frame in ``image`` (what needs one picture: logs, sizes), every sampled frame in
    ``frames`` with the second each was taken at in ``timestamps``, and the client's container bytes in
    ``source`` (``source_type`` video/mp4, video/webm, video/quicktime) for engines that send the clip on.
    """

    image: Image.Image
    kind: Literal["image", "video"] = "image"
    source: bytes | None = None  # the client's encoded bytes, when they hold exactly ``image`` (or the video)
    source_type: str | None = None  # how the client encoded it (image/png, image/jpeg, image/webp, video/mp4), if known
    frames: tuple[Image.Image, ...] = ()  # a video's sampled frames, in order (``image`` is the first)
    timestamps: tuple[float, ...] = ()  # the second of the video each frame was taken at
    fps: float | None = None  # the rate the frames were sampled at

    @classmethod
    def images(cls, images: Sequence[Image.Image]) -> tuple[MediaItem, ...]:
        return tuple(cls(image) for image in images)

    @classmethod
    def decoded(cls, loaded: LoadedImage) -> MediaItem:
        """A decoded upload or image URL, with the client's bytes when they hold exactly the image."""
        return cls(loaded.image, source=loaded.source, source_type=loaded.source_type)


@dataclass(frozen=True)
class EngineRequest:
    """What a backend is asked to answer, before it is turned into a prompt."""

    turns: tuple[ChatTurn, ...]
    media: tuple[MediaItem, ...] = ()
    tools: tuple[Mapping[str, Any], ...] = ()  # OpenAI function tools, validated
    tool_choice: str | Mapping[str, Any] | None = None  # "none", "auto", "required" or a named function
    parallel_tool_calls: bool = True  # False: at most one tool call per answer
    prompt: str | None = None  # a raw text prompt (/v1/completions): no chat template, no turns, no media
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)  # extra variables for the chat template
    # Background work (document pages): an engine that schedules may let interactive requests go first; others
    # ignore it.
    background: bool = False

    @classmethod
    def chat(
        cls, turns: Sequence[ChatTurn], images: Sequence[Image.Image] = (), *, background: bool = False
    ) -> EngineRequest:
        return cls(tuple(turns), MediaItem.images(images), background=background)

    @property
    def num_images(self) -> int:
        return sum(1 for item in self.media if item.kind == "image")

    @property
    def calls_tools(self) -> bool:
        """The answer may (or must) be tool calls: tools are given and tool_choice is not "none"."""
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def forced_tool(self) -> str | None:
        """The function named by tool_choice, if one is."""
        if isinstance(self.tool_choice, Mapping):
            return str(self.tool_choice["function"]["name"])
        return None


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. ``None`` means "the engine's default" (the checkpoint's generation config)."""

    max_tokens: int | None = None  # None: the server default, capped by the context left
    temperature: float | None = None  # 0 means greedy
    top_p: float | None = None
    top_k: int | None = None  # 0 means no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = ()
    output: OutputFormat | None = None  # a JSON answer (under a schema), enforced while decoding
    # Carried for every backend; a backend that cannot honour one refuses the request (400 naming it).
    min_tokens: int = 0
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    return_token_ids: bool = False  # ask a remote engine for token ids (in-process engines always know them)
    # vLLM's sampling extensions (its SamplingParams names and defaults)
    min_p: float = 0.0  # drop tokens less likely than min_p x the most likely one
    stop_token_ids: tuple[int, ...] = ()  # end the answer at any of these tokens (finish_reason "stop")
    include_stop_str_in_output: bool = False  # keep the stop string that ended the answer in its text
    skip_special_tokens: bool = True  # leave special tokens out of the text
    spaces_between_special_tokens: bool = True
    incremental: bool = True  # the caller reads deltas as they come; False: only the whole answer matters
    continuous_usage: bool = False  # the caller reports usage on every chunk: a remote engine asks its upstream

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def over(self, defaults: SamplingParams) -> SamplingParams:
        """These settings with every unset (None) field taken from ``defaults``."""
        unset = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is None}
        return dataclasses.replace(self, **unset)


GREEDY = SamplingParams(temperature=0.0, top_p=1.0, top_k=0)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    image_tokens: int = 0  # part of prompt_tokens
    reasoning_tokens: int | None = None  # part of completion_tokens; None: the model does not reason (or not said)


@dataclass(frozen=True)
class TokenLogprob:
    """The log probability of one generated token, with the most likely alternatives at that position."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None  # the token's UTF-8 bytes (part of a character, for byte-level BPE)
    top: tuple[TokenLogprob, ...] = ()  # the top_logprobs alternatives, most likely first


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of call ``index`` has its id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""  # the next piece of the arguments' JSON text


@dataclass(frozen=True)
class Delta:
    """A piece of generated text; the last one of a request carries ``finish_reason`` and ``usage``."""

    text: str
    finish_reason: FinishReason | None = None
    token_ids: tuple[int, ...] = ()  # the tokens generated since the previous delta, when the engine knows them
    usage: Usage | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # one per token in token_ids, when the request asked for logprobs
    tool_calls: tuple[ToolCallDelta, ...] = ()
    # On a request's first delta: seconds it waited inside this engine before generation began (a place in
    # the batch; remote: before it was sent upstream). None: the engine does not say.
    queued_s: float | None = None
    reasoning: str = ""  # the next piece of a reasoning model's thinking (never part of ``text``)
    # The prompt's length in tokens, on a delta before the last, where the engine knows it exactly (for usage on
    # every chunk, stream_options.continuous_usage_stats); the last delta's ``usage`` says it in any case.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # the tokens generated so far, where an upstream says (its running usage)


TEMPLATE_TOKENS = 16  # a bound on what a chat template adds around one message or one image
TOOLS_TEMPLATE_TOKENS = 512  # a bound on the instructions a chat template adds when tools are given


@dataclass
class Prepared:
    """A request turned into this backend's prompt; subclassed by each backend with what it needs."""

    request: EngineRequest
    image_tokens: int = 0  # visual tokens the images cost, when the backend knows it before generating

    @property
    def num_tokens(self) -> int:
        """The prompt's length in tokens. A backend that tokenises the prompt knows it and says so; this is an
        upper bound for one that does not (remote): a token per UTF-8 byte of text (a token covers at least
        one), the images' and videos' tokens, and what the chat template may add."""
        request = self.request
        if request.prompt is not None:
            return len(request.prompt.encode())
        texts = [part.get("text", "") for turn in request.turns for part in turn.parts]
        texts += [call.name + call.arguments for turn in request.turns for call in turn.tool_calls]
        texts += [json.dumps(tool) for tool in request.tools]
        # a video's frames go in pairs, each pair with its own time and vision markers (Qwen3-VL)
        groups = sum(-(-len(item.frames) // 2) for item in request.media if item.kind == "video")
        template = TEMPLATE_TOKENS * (1 + len(request.turns) + len(request.media) + groups)
        tools = TOOLS_TEMPLATE_TOKENS if request.tools else 0
        return sum(len(text.encode()) for text in texts) + self.image_tokens + template + tools


@dataclass(frozen=True)
class ModelInfo:
    id: str
    max_model_len: int
    max_images_per_request: int
    architecture: str
    created: int
    min_pixels: int = 0  # the per-image pixel budget images are resized into
    max_pixels: int = 0
    # Videos one request may hold on this engine: None, as many as the video settings allow; 0, none (a request
    # with one is refused, naming its video_url, best before it is decoded).
    max_videos_per_request: int | None = None


@dataclass(frozen=True)
class EngineStatus:
    """Load and health of a backend, for readiness and metrics."""

    queue_depth: int = 0  # requests waiting for a slot
    running: int = 0  # requests being generated
    detail: str | None = None  # what it is doing while not ready (loading, restarting, no upstream healthy)


@dataclass(frozen=True)
class Exposition:
    """Metrics in a Prometheus text format, as the engine served them."""

    body: bytes
    content_type: str


@runtime_checkable
class ExposesMetrics(Protocol):
    """An engine with metrics of its own (the managed vLLM child's ``/metrics``)."""

    async def engine_metrics(self) -> Exposition:
        """The engine's metrics now; ServiceUnavailableError when it cannot be read."""
        ...


@runtime_checkable
class Engine(Protocol):
    """An inference backend serving one model."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def ready(self) -> bool:
        """True once the model is loaded and a warm-up generation has completed, and while it can serve."""
        ...

    @property
    def capacity(self) -> int:
        """Requests it can hold at once, running and waiting; the service admits no more (429 beyond)."""
        ...

    def status(self) -> EngineStatus: ...

    async def start(self) -> None:
        """Load the model and warm it up; returns when ready."""
        ...

    async def close(self) -> None: ...

    async def prepare(self, request: EngineRequest) -> Prepared:
        """Turn the request into this backend's prompt (off the event loop). Raises ClientError."""
        ...

    async def check(self, prepared: Prepared, params: SamplingParams) -> None:
        """Refuse, before anything is generated, what this backend cannot do: a prompt that does not fit
        the context, a parameter it does not support, an output format it cannot enforce (ClientError)."""
        ...

    async def check_output(self, output: OutputFormat) -> None:
        """ClientError when this backend cannot enforce ``output`` (also part of ``check``)."""
        ...

    def generate(self, prepared: Prepared, params: SamplingParams) -> AsyncIterator[Delta]:
        """Stream the completion. Closing the iterator early cancels the generation."""
        ...
