"""``chat_template_kwargs``: variables a request hands the checkpoint's chat template (vLLM's field).

Qwen3's templates read ``enable_thinking``; others read their own switches. A name must be an identifier and
must not be one of the template's own inputs, which vlserve sets from the request (a request cannot swap the
messages or tools a template sees, nor turn the generation prompt off). Values are small JSON; they reach the
template as they are, and an upstream vLLM gets the same object.
"""

from __future__ import annotations

import json
from typing import Any

from vlserve.errors import ClientError

PARAM = "chat_template_kwargs"
MAX_KEYS = 16
MAX_CHARS = 4096
# What vlserve (or the tokenizer's apply_chat_template) passes itself.
RESERVED = frozenset(
    {"messages", "conversation", "tools", "documents", "add_generation_prompt", "continue_final_message",
     "chat_template", "tokenize", "return_dict", "return_tensors", "padding", "truncation", "max_length",
     "bos_token", "eos_token", "raise_exception", "strftime_now", "tokenizer", "processor"}
)  # fmt: skip


def chat_template_kwargs(value: dict[str, Any] | None) -> dict[str, Any]:
    """The checked variables (an empty dict when none were sent); ClientError naming the first bad one."""
    if not value:
        return {}
    if len(value) > MAX_KEYS:
        raise ClientError(f"{PARAM} takes at most {MAX_KEYS} variables, got {len(value)}", param=PARAM)
    for name in value:
        if not name.isidentifier():
            raise ClientError(f"{PARAM}: {name[:64]!r} is not a variable name", param=f"{PARAM}.{name[:64]}")
        if name in RESERVED or name.startswith("_"):
            raise ClientError(
                f"{PARAM}: '{name}' is set by the server from the request and cannot be replaced",
                param=f"{PARAM}.{name}",
            )
    if len(json.dumps(value, ensure_ascii=False)) > MAX_CHARS:
        raise ClientError(f"{PARAM} is longer than {MAX_CHARS} characters of JSON", param=PARAM)
    return dict(value)
