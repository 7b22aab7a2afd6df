"""The OpenAI wire format of the remote engine: the request body sent upstream, and its answer read back.

The engine asks for the upstream's stream (``stream_options.include_usage``) whether or not its client
streams, so that tokens coming back show the upstream is progressing (the stalled-engine check); a
whole, non-streamed answer is read as well. A chat goes to ``/chat/completions``, a raw text prompt to
``/completions``; the answers differ only in where the text is (``message.content`` / ``delta.content``
vs ``text``) and in the shape of the log probabilities, so one reader serves both. A reply is parsed
under the server's depth rule (:mod:`vlserve.jsonlimits`, its default 32 levels): one nested deeper is
not an answer (502), never a RecursionError.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from vlserve.engine.base import ChatTurn, Delta, EngineRequest, SamplingParams, TokenLogprob, ToolCallDelta, Usage
from vlserve.engine.vision_ids import template_variables
from vlserve.errors import ClientError, RateLimitError, UpstreamError, VLServeError
from vlserve.jsonlimits import DEFAULT_MAX_DEPTH, loads
from vlserve.structured import OutputFormat
from vlserve.structured.formats import ANY_OBJECT

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def messages(turns: Sequence[ChatTurn], media_urls: Sequence[str]) -> list[dict[str, Any]]:
    """OpenAI messages: text-only turns as strings, image and video placeholders filled in order with
    ``media_urls`` (``image_url`` and ``video_url`` parts); an assistant's tool calls and the tool answers as
    OpenAI sends them."""
    urls = iter(media_urls)
    out: list[dict[str, Any]] = []
    for turn in turns:
        if turn.tool_calls or turn.tool_call_id is not None:
            out.append(_tool_message(turn))
            continue
        if all(p["type"] == "text" for p in turn.parts) and len(turn.parts) == 1:
            out.append({"role": turn.role, "content": turn.parts[0]["text"]})
            continue
        content = [_part(p, urls) for p in turn.parts]
        out.append({"role": turn.role, "content": content})
    return out


def _part(part: Mapping[str, str], urls: Iterator[str]) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    if part["type"] == "video":
        return {"type": "video_url", "video_url": {"url": next(urls)}}
    return {"type": "image_url", "image_url": {"url": next(urls)}}


def _tool_message(turn: ChatTurn) -> dict[str, Any]:
    """An assistant turn that called tools (content null when it said nothing), or a tool's answer."""
    text = "".join(p["text"] for p in turn.parts if p["type"] == "text")
    if turn.tool_call_id is not None:
        return {"role": turn.role, "tool_call_id": turn.tool_call_id, "content": text}
    calls = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in turn.tool_calls
    ]
    return {"role": turn.role, "content": text or None, "tool_calls": calls}


def chat_inputs(request: EngineRequest, media_urls: Sequence[str]) -> dict[str, Any]:
    """A chat's part of the body: the messages, and the tools with how to use them when it gives any."""
    inputs: dict[str, Any] = {"messages": messages(request.turns, media_urls)}
    if request.tools:
        inputs["tools"] = [dict(tool) for tool in request.tools]
        if request.tool_choice is not None:
            choice = request.tool_choice
            inputs["tool_choice"] = choice if isinstance(choice, str) else dict(choice)
        if not request.parallel_tool_calls:
            inputs["parallel_tool_calls"] = False
    # e.g. {"enable_thinking": false} from the client, {"add_vision_id": true} for several pictures (vision_ids)
    if variables := template_variables(request):
        inputs["chat_template_kwargs"] = variables
    return inputs


def response_format(output: OutputFormat) -> dict[str, Any] | None:
    """A JSON answer as OpenAI asks for it (which any OpenAI-compatible upstream takes); None for other kinds."""
    if output.kind != "json":
        return None
    if output.name == "json_object" and output.schema == ANY_OBJECT:
        return {"type": "json_object"}
    name = _NAME_CHARS.sub("_", output.name)[:64] or "schema"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": output.schema, "strict": True}}


def structured_outputs(output: OutputFormat) -> dict[str, Any] | None:
    """A regex, choice, grammar or structural tag as vLLM (0.12 and later) takes it; None for a JSON answer."""
    if output.kind == "json":
        return None
    return {output.kind: list(output.choices) if output.kind == "choice" else output.source}


def request_body(model: str, inputs: Mapping[str, Any], params: SamplingParams, *, stream: bool) -> dict[str, Any]:
    """The request: ``inputs`` (:func:`chat_inputs`, or ``{"prompt": text}`` for a text completion) and of
    the settings only what the client set, so the upstream's defaults apply."""
    body: dict[str, Any] = {"model": model, **inputs, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
        if params.continuous_usage:  # the running usage on every chunk, relayed (vLLM and SGLang take it)
            body["stream_options"]["continuous_usage_stats"] = True
    if params.logprobs:  # a text completion asks for the number of alternatives; a chat, for a flag and a number
        body.update({"logprobs": params.top_logprobs} if "prompt" in inputs else {"logprobs": True})
    if params.top_logprobs and "prompt" not in inputs:
        body["top_logprobs"] = params.top_logprobs
    # A chat's limit is max_completion_tokens (vLLM marks max_tokens deprecated there, OpenAI's newer models
    # refuse it); a text completion has only max_tokens.
    limit = "max_tokens" if "prompt" in inputs else "max_completion_tokens"
    optional = {
        limit: params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "seed": params.seed,
        "stop": list(params.stop) or None,
        "response_format": None if params.output is None else response_format(params.output),
        "structured_outputs": None if params.output is None else structured_outputs(params.output),
        "min_tokens": params.min_tokens or None,
        "ignore_eos": params.ignore_eos or None,
        "presence_penalty": params.presence_penalty or None,
        "frequency_penalty": params.frequency_penalty or None,
        "repetition_penalty": None if params.repetition_penalty == 1.0 else params.repetition_penalty,
        "logit_bias": {str(k): v for k, v in params.logit_bias.items()} or None,
        "return_token_ids": params.return_token_ids or None,
        # vLLM's sampling extensions, each only when it differs from vLLM's default
        "min_p": params.min_p or None,
        "stop_token_ids": list(params.stop_token_ids) or None,
        "include_stop_str_in_output": params.include_stop_str_in_output or None,
        "skip_special_tokens": None if params.skip_special_tokens else False,
        "spaces_between_special_tokens": None if params.spaces_between_special_tokens else False,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def upstream_error(
    status: int, payload: bytes, headers: Mapping[str, str], scrub: Callable[[str], str]
) -> VLServeError:
    """An upstream's error answer as vlserve's error: 4xx keep their status, 5xx become 502."""
    message, param, code, kind = _envelope(payload)
    message = scrub(message) if message else f"the upstream answered HTTP {status}"
    if status == 429:
        retry = headers.get("retry-after", "1")
        return RateLimitError(message, param=param, headers={"Retry-After": retry if retry.isdigit() else "1"})
    if 400 <= status < 500:
        error = ClientError(message, param=param, code=code or f"http_{status}")
        error.status_code = status
        if kind:
            error.error_type = kind
        return error
    return UpstreamError(f"the upstream engine failed (HTTP {status}): {message}")


def _envelope(payload: bytes) -> tuple[str, str | None, str | None, str | None]:
    """(message, param, code, type) of an OpenAI error body, or of vLLM's older flat one."""
    try:
        body = loads(payload or b"null", DEFAULT_MAX_DEPTH)  # too deep is a ValueError, like bad JSON
    except ValueError:
        return payload[:300].decode("utf-8", "replace").strip(), None, None, None
    if not isinstance(body, dict):
        return "", None, None, None
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    message = error.get("message") or error.get("detail") or ""
    code = error.get("code")
    return (
        str(message)[:2000],
        error.get("param") if isinstance(error.get("param"), str) else None,
        code if isinstance(code, str) else None,
        error.get("type") if isinstance(error.get("type"), str) else None,
    )


def completion_deltas(payload: bytes, image_tokens: int) -> list[Delta]:
    """A whole (non-streamed) answer as deltas: the text (tool calls, logprobs), then the finish with the usage."""
    try:
        body = loads(payload, DEFAULT_MAX_DEPTH)
        choice = body["choices"][0]
        answer = _answer(choice, choice["message"] if "text" not in choice else {})
        reason = _finish_reason(choice.get("finish_reason") or "stop")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise UpstreamError("the upstream's answer is not a (chat) completion") from None
    usage = body.get("usage") or {}
    generated = len(answer.token_ids) or len(answer.logprobs)
    counts = Usage(
        int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or generated), image_tokens,
        _reasoning_tokens(usage),
    )  # fmt: skip
    return [answer, Delta("", reason, usage=counts)]  # type: ignore[arg-type]


def _reasoning(message: Mapping[str, Any]) -> str:
    """A message's (or delta's) reasoning: ``reasoning`` from vLLM 0.11 on, ``reasoning_content`` from older
    vLLM, SGLang and DeepSeek-style servers."""
    for name in ("reasoning", "reasoning_content"):
        if isinstance(message.get(name), str) and message[name]:
            return message[name]
    return ""


def _reasoning_tokens(usage: Mapping[str, Any]) -> int | None:
    """``completion_tokens_details.reasoning_tokens``, when the upstream counts them."""
    details = usage.get("completion_tokens_details")
    count = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _answer(choice: Mapping[str, Any], message: Mapping[str, Any]) -> Delta:
    """A choice's text, token ids, tool calls and logprobs; ``message`` is its ``message`` or ``delta``."""
    text = choice["text"] if "text" in choice else message.get("content")
    calls = message.get("tool_calls") or ()
    return Delta(
        text or "",
        token_ids=tuple(choice.get("token_ids") or ()),
        logprobs=_logprobs(choice.get("logprobs")),
        tool_calls=tuple(_tool_call(call, n) for n, call in enumerate(calls)),
        reasoning=_reasoning(message),
    )


def _tool_call(call: Mapping[str, Any], position: int) -> ToolCallDelta:
    """A whole call (``message.tool_calls``), or a streamed piece of one (``delta.tool_calls``, with its index)."""
    function = call.get("function") or {}
    arguments = function.get("arguments") or ""
    return ToolCallDelta(
        index=int(call.get("index", position)),
        id=call.get("id"),
        name=function.get("name"),
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
    )


def _logprobs(raw: Any) -> tuple[TokenLogprob, ...]:
    """Chat's ``logprobs.content`` entries, or a text completion's parallel lists, as TokenLogprobs."""
    if not isinstance(raw, Mapping):
        return ()
    if raw.get("content") is not None:
        return tuple(_chat_logprob(entry) for entry in raw["content"])
    tokens, values = raw.get("tokens") or [], raw.get("token_logprobs") or []
    tops = raw.get("top_logprobs") or [None] * len(tokens)
    return tuple(
        TokenLogprob(token, float(value), top=_legacy_top(top))
        for token, value, top in zip(tokens, values, tops, strict=True)
    )


def _chat_logprob(entry: Mapping[str, Any]) -> TokenLogprob:
    top = tuple(_chat_logprob(t) for t in entry.get("top_logprobs") or ())
    return TokenLogprob(entry["token"], float(entry["logprob"]), _bytes(entry), top)


def _legacy_top(top: Mapping[str, float] | None) -> tuple[TokenLogprob, ...]:
    """``{token: logprob}`` as alternatives, most likely first."""
    return tuple(TokenLogprob(t, float(v)) for t, v in sorted((top or {}).items(), key=lambda item: -item[1]))


def _bytes(entry: Mapping[str, Any]) -> tuple[int, ...] | None:
    return None if entry.get("bytes") is None else tuple(entry["bytes"])


def _with_running(piece: Delta, usage: Any) -> Delta:
    """``piece`` with the upstream's running usage, when its chunk carried one (continuous_usage_stats)."""
    if not isinstance(usage, dict):
        return piece
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return piece
    return dataclasses.replace(piece, prompt_tokens=prompt, completion_tokens=completion)


class ChunkReader:
    """Turns the upstream's SSE lines into deltas; the last carries the finish reason and the usage."""

    def __init__(self, image_tokens: int, scrub: Callable[[str], str]) -> None:
        self._image_tokens = image_tokens
        self._scrub = scrub
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._generated = 0
        self.done = False  # the final delta was produced

    @property
    def finished(self) -> bool:
        return self._finish is not None

    def feed(self, line: str) -> Iterator[Delta]:
        if not line.startswith("data:"):
            return
        data = line[5:].strip()
        if data == "[DONE]":
            yield from self.end()
            return
        try:
            chunk = loads(data, DEFAULT_MAX_DEPTH)
        except ValueError:
            raise UpstreamError("the upstream sent a stream event that is not JSON") from None
        if "error" in chunk or chunk.get("object") == "error":
            raise self._stream_error(chunk)
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            try:
                piece = _answer(choice, choice.get("delta") or {})
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                raise UpstreamError("the upstream sent a stream event that is not a (chat) completion") from None
            self._generated += (
                len(piece.token_ids)
                or len(piece.logprobs)
                or int(bool(piece.text or piece.tool_calls or piece.reasoning))
            )
            if choice.get("finish_reason"):
                self._finish = _finish_reason(choice["finish_reason"])
            if piece.text or piece.reasoning or piece.token_ids or piece.logprobs or piece.tool_calls:
                yield _with_running(piece, chunk.get("usage"))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
            if self._finish is not None:
                yield from self.end()

    def end(self) -> Iterator[Delta]:
        """The final delta, once the answer has finished (at the usage chunk, ``[DONE]`` or the end)."""
        if self.done or self._finish is None:
            return
        self.done = True
        usage = self._usage or {}
        yield Delta(
            "",
            self._finish,  # type: ignore[arg-type]
            usage=Usage(
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or self._generated),
                self._image_tokens,
                _reasoning_tokens(usage),
            ),
        )

    def _stream_error(self, chunk: dict[str, Any]) -> VLServeError:
        error = chunk.get("error") if isinstance(chunk.get("error"), dict) else chunk
        status = error.get("code") if isinstance(error.get("code"), int) else 500
        return upstream_error(status, json.dumps({"error": error}).encode(), {}, self._scrub)


def _finish_reason(reason: str) -> str:
    if reason in ("stop", "length", "tool_calls"):
        return reason
    if reason == "abort":
        raise UpstreamError("the upstream engine aborted the request")
    return "stop"
