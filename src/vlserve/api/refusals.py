"""OpenAI chat parameters that vlserve does not serve: a 400 naming each, never a silent 200 without it.

Purely informational fields (``user``, ``metadata``, ``store``, ``service_tier``, ``prompt_cache_key``,
``safety_identifier``) change nothing in an answer and are accepted; everything listed here would.
"""

from __future__ import annotations

from vlserve.api.protocol import ChatCompletionRequest
from vlserve.errors import ClientError

UNSERVED = {
    "audio": "the model answers in text only",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "the served model does not take a reasoning effort",
    "verbosity": "the served model does not take a verbosity",
    "web_search_options": "vlserve does not search the web; nothing leaves your network",
    "functions": "use tools",
    "function_call": "use tool_choice",
}


def refuse_unserved(body: ChatCompletionRequest) -> None:
    for name, instead in UNSERVED.items():
        if getattr(body, name) is not None:
            raise ClientError(f"'{name}' is not supported: {instead}", param=name, code="unsupported_parameter")
    if body.modalities is not None and body.modalities != ["text"]:
        raise ClientError(
            'output modalities other than "text" are not supported', param="modalities", code="unsupported_parameter"
        )
