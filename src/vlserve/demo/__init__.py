"""The bundled demo model: a tiny Qwen3-VL-MoE checkpoint built and trained by the project.

`build_random_model(out_dir, seed=0)` writes a random-weight checkpoint of the same class and config
schema as Qwen3-VL-30B-A3B; `train_tokenizer(seed)` trains its byte-level BPE tokenizer;
`CHAT_TEMPLATE_PATH` is its Qwen3-VL style chat template. torch and transformers are imported only
when the builder or the tokenizer is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

CHAT_TEMPLATE_PATH: Path = Path(__file__).resolve().parent / "assets" / "chat_template.jinja"

if TYPE_CHECKING:
    from vlserve.demo.build import build_random_model
    from vlserve.demo.tokenizer import train_tokenizer

__all__ = ["CHAT_TEMPLATE_PATH", "build_random_model", "train_tokenizer"]


def __getattr__(name: str) -> Any:
    if name == "build_random_model":
        from vlserve.demo.build import build_random_model

        return build_random_model
    if name == "train_tokenizer":
        from vlserve.demo.tokenizer import train_tokenizer

        return train_tokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
