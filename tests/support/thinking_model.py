"""A thinking variant of the random demo checkpoint, and a bias that makes it close its reasoning.

The variant's tokenizer has Qwen3's ``<think>`` / ``</think>`` tokens (not special: they stay in decoded
text), its embeddings are grown to match, and its chat template opens ``<think>`` in the generation prompt
as Qwen3-VL's Thinking templates do (``enable_thinking: false`` closes an empty block instead, as hybrid
Qwen3 templates do). Random weights never write ``</think>`` by themselves: :func:`closing_bias` finds the
``logit_bias`` on it that makes the greedy answer close its reasoning after a few tokens of reasoning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import AutoModelForImageTextToText, AutoTokenizer

from vlserve.demo import CHAT_TEMPLATE_PATH
from vlserve.demo.build import save_checkpoint

_GENERATION_PROMPT = "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}"
_THINKING_PROMPT = """{%- if add_generation_prompt %}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}
    {%- else %}
        {{- '<|im_start|>assistant\\n<think>\\n' }}
    {%- endif %}
{%- endif %}"""
_HISTORY = "{%- elif message.role != 'system' %}"
_ASSISTANT_HISTORY = """{%- elif message.role == 'assistant' %}
        {#- earlier answers without their reasoning, as Qwen's templates render them #}
        {{- '<|im_start|>assistant\\n' + render_content(message.content, false).split('</think>')[-1].lstrip('\\n') }}
        {{- '<|im_end|>\\n' }}
    """


def thinking_template() -> str:
    """The demo chat template with Qwen3-VL Thinking's generation prompt and history rendering."""
    template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    assert template.count(_GENERATION_PROMPT) == 1 and template.count(_HISTORY) == 1
    return template.replace(_GENERATION_PROMPT, _THINKING_PROMPT).replace(_HISTORY, _ASSISTANT_HISTORY + _HISTORY)


def build_thinking_model(demo: Path, out: Path) -> Path:
    """A copy of the demo checkpoint at ``demo`` that thinks, written to ``out``."""
    tokenizer = AutoTokenizer.from_pretrained(demo)
    tokenizer.add_tokens([AddedToken(marker, special=False, normalized=False) for marker in ("<think>", "</think>")])
    tokenizer.chat_template = thinking_template()
    model = AutoModelForImageTextToText.from_pretrained(demo, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    save_checkpoint(model, tokenizer, out, manifest={"kind": "random-thinking"})
    return out


def closing_bias(logits: torch.Tensor, generated: Sequence[int], marker: int) -> tuple[float, int]:
    """(bias, k): a ``logit_bias`` on ``marker`` under which greedy decoding keeps the first ``k >= 1`` tokens
    of ``generated`` (its unbiased answer, ``logits`` the rows it was drawn from) and then writes ``marker``."""
    margins = [float(row.max() - row[marker]) for row in logits[: len(generated)]]
    assert marker not in generated
    # the position where the marker, once biased, wins by the widest gap over every earlier one
    gap, k = max((min(margins[:k]) - margins[k], k) for k in range(1, len(margins)))
    assert gap > 0.05, "no position where a bias on the marker makes it win first by a clear gap"
    return margins[k] + gap / 2, k
