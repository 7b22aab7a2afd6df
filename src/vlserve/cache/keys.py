"""Which requests may be cached, and the key of their answer.

A request is cacheable when its answer is determined by its input: greedy decoding (temperature 0 or
top_k 1) or a fixed seed. The key is the SHA-256 of a canonical JSON of everything that shapes the answer:
the endpoint kind, the served model and the server settings that change answers, the parsed turns (roles,
text parts, tool calls, tool_call_id) or the raw prompt, the SHA-256 of each image's encoded bytes in
order, the tools, every sampling field, whether the answer streams (its chunking), and the scope (the
caller, unless entries are shared).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from vlserve.engine.base import EngineRequest, SamplingParams

KEY_VERSION = 1
SHARED = "*"  # the scope of every caller when entries are shared


def cacheable(params: SamplingParams) -> bool:
    """The answer is determined by the request: greedy, or sampled from a fixed seed. A request that leaves
    the temperature to the model's default is not: the default may sample."""
    return params.greedy or params.seed is not None


def directives(cache_control: str | None) -> tuple[bool, bool]:
    """(read, write) the cache for a request's Cache-Control: no-cache → (False, True); no-store → (False, False)."""
    names = {part.split("=", 1)[0].strip().lower() for part in (cache_control or "").split(",")}
    if "no-store" in names:
        return False, False
    return "no-cache" not in names, True


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _turns(request: EngineRequest) -> list[Any]:
    return [
        {
            "role": turn.role,
            "parts": [dict(part) for part in turn.parts],
            "tool_calls": [[call.id, call.name, call.arguments] for call in turn.tool_calls],
            "tool_call_id": turn.tool_call_id,
        }
        for turn in request.turns
    ]


def _sampling(params: SamplingParams) -> dict[str, Any]:
    fields = {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.name != "incremental"}
    output = fields.pop("output")
    fields["output"] = None if output is None else [output.kind, output.name, output.schema_json, output.source]
    fields["stop"] = list(params.stop)
    fields["logit_bias"] = sorted([int(token), bias] for token, bias in params.logit_bias.items())
    return fields


def cache_key(
    *,
    kind: str,
    scope: str,
    server: Mapping[str, Any],
    request: EngineRequest,
    image_hashes: Sequence[str],
    params: SamplingParams,
    stream: bool,
) -> str:
    """The key of the answer to ``request`` (whose media are given as ``image_hashes``), hex SHA-256."""
    canonical = {
        "v": KEY_VERSION,
        "kind": kind,
        "scope": scope,
        "server": dict(server),
        "turns": _turns(request),
        "prompt": request.prompt,
        "images": list(image_hashes),
        "tools": [dict(tool) for tool in request.tools],
        "tool_choice": request.tool_choice,
        "parallel_tool_calls": request.parallel_tool_calls,
        "chat_template_kwargs": dict(request.chat_template_kwargs),
        "sampling": _sampling(params),
        "stream": stream,
    }
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
