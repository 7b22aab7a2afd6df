"""Which dtype and thread count a checkpoint should run with on this CPU: prefill and decode, in-process.

    .venv/bin/python bench/cpu_dtype.py --model DIR [--dtype float32,bfloat16] [--threads 0,8]
        [--prompt 512] [--batch 8] [--steps 6]

For each dtype and thread count (0: what vlserve picks, VLSERVE_CPU_THREADS unset) it loads the checkpoint
as the transformers engine does and reports, as Markdown rows:
- **prefill**: one forward pass over ``--prompt`` text tokens (compute-bound: where emulated bfloat16 hurts);
- **decode**: the mean of ``--steps`` batched steps of ``--batch`` sequences (memory-bound);
- **load**: seconds to a model in memory, and the process's anonymous and file-backed resident memory.
No server, no network: it isolates the kernels from HTTP, batching and images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vlserve.engine.transformers.checkpoint import load_checkpoint, set_cpu_threads
from vlserve.engine.transformers.cpu import native_bfloat16


def resident_gb() -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[key].split()[0]) / 1e6 for key in ("RssAnon", "RssFile"))  # type: ignore[return-value]


def measure(model_dir: Path, dtype: str, threads: int, args: argparse.Namespace) -> str:
    chosen = set_cpu_threads(threads or None)
    started = time.perf_counter()
    model = load_checkpoint(model_dir, dtype=dtype).model
    load = time.perf_counter() - started
    anon, file = resident_gb()
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        prompt = torch.randint(0, 1000, (1, args.prompt), generator=generator)
        model(input_ids=prompt[:, :16])  # first call: allocator and kernel selection
        started = time.perf_counter()
        model(input_ids=prompt)
        prefill = time.perf_counter() - started
        batch = torch.randint(0, 1000, (args.batch, 32), generator=generator)
        cache = model(input_ids=batch, use_cache=True).past_key_values
        step = torch.randint(0, 1000, (args.batch, 1), generator=generator)
        started = time.perf_counter()
        for _ in range(args.steps):
            cache = model(input_ids=step, past_key_values=cache, use_cache=True).past_key_values
        decode = (time.perf_counter() - started) / args.steps
    return (
        f"| {dtype} | {chosen} | {args.prompt / prefill:.1f} | {args.batch / decode:.2f} ({decode * 1000:.0f} ms) "
        f"| {load:.1f} | {anon:.2f} / {file:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--dtype", default="float32,bfloat16", type=lambda s: s.split(","))
    parser.add_argument("--threads", default="0", type=lambda s: [int(t) for t in s.split(",")])
    parser.add_argument("--prompt", type=int, default=512, help="prefill length in tokens")
    parser.add_argument("--batch", type=int, default=8, help="sequences per decode step")
    parser.add_argument("--steps", type=int, default=6, help="decode steps averaged")
    args = parser.parse_args()
    print(f"CPU computes bfloat16 natively: {native_bfloat16()}")
    print(f"| dtype | threads | prefill tok/s ({args.prompt} tokens) | decode tok/s, batch {args.batch} (per step) "
          "| load s | RSS anon / file GB |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for dtype in args.dtype:
        for threads in args.threads:
            print(measure(args.model, dtype, threads, args), flush=True)


if __name__ == "__main__":
    main()
