"""Every request field is honoured or refused by name: the fields vLLM and OpenAI define that vlserve does not serve.

A field listed here is accepted only at the value that changes nothing (vLLM 0.32's default) or null; any other
value is a 400 naming it. A key that neither OpenAI nor vLLM 0.32 defines is a 400 naming it, as OpenAI answers
("Unrecognized request argument supplied"). Fields vlserve serves are declared on the request models
(api/protocol.py, api/completion_protocol.py); informational ones (``user``, ``metadata``, ...) change nothing
in an answer and are accepted there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from vlserve.errors import ClientError

Endpoint = Literal["chat", "completions"]


@dataclass(frozen=True)
class Refused:
    default: Any  # the value that changes nothing; it and null are accepted
    reason: str
    endpoints: tuple[Endpoint, ...] = ("chat", "completions")
    completions_default: Any = ...  # where text completions' default differs (vLLM's add_special_tokens)

    def default_on(self, endpoint: Endpoint) -> Any:
        return self.default if endpoint == "chat" or self.completions_default is ... else self.completions_default


_BEAM = "beam search is not served; sample, or send separate requests"
_PROMPT = "vlserve builds the prompt from the messages with the checkpoint's own template"
_TOKENS = "vlserve serves text answers; send return_token_ids for token ids"
_DISAGG = "vlserve does not run disaggregated prefill or encoder transfer"

REFUSED: dict[str, Refused] = {
    # sampling vlserve does not implement
    "best_of": Refused(1, "best_of > 1 is not supported; send separate requests"),
    "use_beam_search": Refused(False, _BEAM),
    "length_penalty": Refused(1.0, "it only applies to beam search, which is not served"),
    "typical_p": Refused(1.0, "typical sampling is not served; use top_p, top_k or min_p"),
    "watermarking": Refused(False, "watermarking is not served"),
    "bad_words": Refused([], "use logit_bias with the words' token ids"),
    "allowed_token_ids": Refused(None, "use structured_outputs or logit_bias"),
    "logprob_token_ids": Refused(None, "use logprobs with top_logprobs"),
    "prompt_logprobs": Refused(None, "the prompt's log probabilities are not computed"),
    "repetition_detection": Refused(None, "use repetition_penalty or frequency_penalty"),
    "thinking_token_budget": Refused(None, "use max_completion_tokens"),
    # how the prompt is built
    "truncate_prompt_tokens": Refused(None, "prompts are never truncated: a prompt over the context is refused"),
    "truncation_side": Refused(None, "prompts are never truncated: a prompt over the context is refused"),
    "echo": Refused(False, "the last message is not repeated in the answer", ("chat",)),
    "add_generation_prompt": Refused(True, _PROMPT, ("chat",)),
    "continue_final_message": Refused(False, _PROMPT, ("chat",)),
    "add_special_tokens": Refused(False, _PROMPT, completions_default=True),
    "documents": Refused(None, "put the documents' text in a message, or use POST /v1/documents", ("chat",)),
    "chat_template": Refused(None, "a request cannot replace the served chat template", ("chat",)),
    "media_io_kwargs": Refused(None, "media are decoded under the server's own limits", ("chat",)),
    "mm_processor_kwargs": Refused(None, "the image budget is the server's (VLSERVE_MAX_PIXELS)", ("chat",)),
    "mm_payload": Refused("tensors", "media are decoded under the server's own limits"),
    "return_mm_kwargs": Refused(None, "media are decoded under the server's own limits"),
    "prompt_embeds": Refused(None, "prompts are text", ("completions",)),
    "return_prompt_text": Refused(None, _PROMPT, ("chat",)),
    # what the answer carries
    "return_tokens_as_token_ids": Refused(None, _TOKENS),
    "return_token_offsets": Refused(False, _TOKENS),
    "routed_experts_prompt_start": Refused(0, "expert routing is not reported"),
    "stream_interval": Refused(None, "every token is streamed as it is generated"),
    # scheduling and engine internals
    "priority": Refused(0, "requests are served in arrival order; quotas are per key"),
    "request_id": Refused(None, "vlserve assigns request ids; send an X-Request-Id header to choose one"),
    "session_id": Refused(None, "sessions are not tracked"),
    "cache_salt": Refused(None, "the prefix cache is the engine's; answers are cached per key scope"),
    "kv_transfer_params": Refused(None, _DISAGG),
    "ec_transfer_params": Refused(None, _DISAGG),
    "vllm_xargs": Refused(None, "extra engine arguments are not passed through"),
}


def refused_on(endpoint: Endpoint) -> dict[str, Refused]:
    return {name: rule for name, rule in REFUSED.items() if endpoint in rule.endpoints}


def refuse_fields(extra: dict[str, Any] | None, endpoint: Endpoint) -> None:
    """400 naming the unknown keys of a request (``extra``: what its model did not declare), or the first field
    vlserve does not serve set to a value that would change the answer."""
    rules = refused_on(endpoint)
    unknown = [name for name in extra or {} if name not in rules]
    if unknown:
        shown = ", ".join(name[:64] for name in unknown[:8])
        noun = "argument" if len(unknown) == 1 else "arguments"
        raise ClientError(
            f"Unrecognized request {noun} supplied: {shown}", param=unknown[0][:64], code="unknown_parameter"
        )
    for name, value in (extra or {}).items():
        rule = rules[name]
        if value is None or value == rule.default_on(endpoint):
            continue
        raise ClientError(f"'{name}' is not supported: {rule.reason}", param=name, code="unsupported_parameter")


def declare_refused(schema: dict[str, Any], endpoint: Endpoint) -> None:
    """The OpenAPI body schema of ``endpoint`` with each refused field (its harmless value or null) and no others."""
    properties = schema.setdefault("properties", {})
    for name, rule in refused_on(endpoint).items():
        properties.setdefault(
            name,
            {
                "anyOf": [{"const": rule.default_on(endpoint)}, {"type": "null"}],
                "description": f"Not supported: {rule.reason}. Only the value that changes nothing, or null.",
            },
        )
    schema["additionalProperties"] = False
