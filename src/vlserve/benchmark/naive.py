"""The naive baseline: the seed articles' script, run in this process on the same checkpoint and workload.

One request at a time: ``AutoProcessor`` (chat template, image preprocessing) → ``model.generate`` →
``decode``, with the checkpoint's own generation settings, on the GPU when there is one. Nothing streams, so a
request's TTFT is its whole latency and it has no ITL. Loading the model is timed apart and not counted, and
one untimed request warms it up first.

transformers' ``AutoProcessor`` for Qwen3-VL also builds the video processor, which needs torchvision; where
torchvision is missing, the same steps are done by the tokenizer and ``AutoImageProcessor`` (each image
placeholder widened to the image's token count, as the processor does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlserve.benchmark.endpoint import BenchError
from vlserve.benchmark.measure import RequestResult
from vlserve.benchmark.workloads import Prompt

IMAGE_PAD = "<|image_pad|>"


def check_model_dir(model: str | None) -> Path:
    """The checkpoint directory ``--baseline naive`` loads, or a one-line error."""
    if model is None:
        raise BenchError("--baseline naive needs --model DIR, the checkpoint directory the server serves")
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise BenchError(f"--baseline naive needs --model DIR with a config.json; {model} has none")
    return path


class _PlainProcessor:
    """The processor's three uses here, from the tokenizer and the image processor (no torchvision needed)."""

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.image_processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
        jinja = model_dir / "chat_template.jinja"
        self.template = jinja.read_text() if jinja.is_file() else None

    def apply_chat_template(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.template, **kwargs)

    def __call__(self, *, text: list[str], images: list[Any] | None, return_tensors: str) -> dict[str, Any]:
        features: dict[str, Any] = {}
        prompt = text[0]
        if images:
            features = dict(self.image_processor(images=images, return_tensors=return_tensors))
            merge = getattr(self.image_processor, "merge_size", 2) ** 2
            pieces = prompt.split(IMAGE_PAD)
            counts = [int(g.prod()) // merge for g in features["image_grid_thw"]]
            prompt = pieces[0] + "".join(IMAGE_PAD * c + p for c, p in zip(counts, pieces[1:], strict=True))
        return {**self.tokenizer([prompt], return_tensors=return_tensors), **features}

    def decode(self, ids: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(ids, **kwargs)


class NaiveModel:
    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its bar would garble the live table
        started = time.perf_counter()
        try:
            try:
                self.processor: Any = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
            except ImportError:  # the video processor wants torchvision
                self.processor = _PlainProcessor(model_dir)
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
            model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype="auto", local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(f"--baseline naive cannot load {model_dir}: {str(exc).splitlines()[0]}") from None
        self.model = model.to(self.device).eval()
        self.load_s = time.perf_counter() - started

    def answer(self, prompt: Prompt, n: int, *, max_tokens: int, ignore_eos: bool) -> RequestResult:
        import torch

        result = RequestResult(start=time.perf_counter())
        images = [image.pil() for image in prompt.images]
        content = [*({"type": "image"} for _ in images), {"type": "text", "text": prompt.question(n)}]
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        fixed = {"min_new_tokens": max_tokens} if ignore_eos else {}
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_tokens, **fixed)
        prompt_len = inputs["input_ids"].shape[1]
        self.processor.decode(output[0, prompt_len:], skip_special_tokens=True)
        result.end = result.first_token = time.perf_counter()
        result.ok, result.status = True, 200
        result.output_tokens = int(output.shape[1] - prompt_len)
        result.prompt_tokens = int(prompt_len)
        return result


def run_naive(
    model: NaiveModel,
    prompts: Sequence[tuple[int, Prompt]],
    *,
    max_tokens: int,
    ignore_eos: bool,
    deadline: float,
    on_result: Callable[[RequestResult], None],
) -> list[RequestResult]:
    """Answer ``prompts`` (request number, prompt) one after another until done or ``deadline`` (perf_counter)."""
    if prompts:  # one untimed request first, as a running server has long been warm
        model.answer(prompts[0][1], -1, max_tokens=2, ignore_eos=False)
    results = []
    for n, prompt in prompts:
        if time.perf_counter() >= deadline:
            break
        result = model.answer(prompt, n, max_tokens=max_tokens, ignore_eos=ignore_eos)
        results.append(result)
        on_result(result)
    return results
