"""How many tokens a request may generate, given its prompt and the model's context."""

from __future__ import annotations

from vlserve.errors import ContextLengthError


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
