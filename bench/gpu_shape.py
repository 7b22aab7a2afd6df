"""Qwen3-VL-30B-A3B's architecture, cut to N decoder layers, served by the transformers engine on a GPU.

    .venv/bin/python bench/gpu_shape.py [--layers 8] [--device auto|cuda|cpu] [--out DIR]
        [--concurrency 1,4,16] [--max-tokens 64] [--requests N] [--workload chart,text]
        [--profile] [--profile-batch 4] [--no-serve] [--results DIR]
    .venv/bin/python bench/gpu_shape.py --device cpu --tiny --max-tokens 16 --requests 8 --profile   # smoke run

1. **Build**: a random-weight checkpoint at the released architecture (the builder of
   `vlserve demo build --shape qwen3-vl-30b-a3b`, vlserve.demo.build_shape: its config.json, bf16 shards
   laid out as released, a tokenizer with Qwen3's token ids), the text model cut to ``--layers`` of its 48
   decoder layers, the vision tower whole. The values are drawn on the device (a GPU draws billions in
   seconds). 8 layers are 6.15 B parameters, 12.3 GB on disk; the free space is printed, and checked, before
   anything is written. Without ``--out`` it goes to a temporary directory, removed at the end;
   ``--out DIR`` keeps it there, and a later run with the same DIR and ``--layers`` reuses it.
   ``--tiny``: 1 layer at tiny widths (hidden 64, 4 experts), for a smoke run on a CPU.
2. **Serve and load**: `vlserve serve --model DIR --engine transformers` on a free loopback port (device
   ``--device``, dtype bfloat16, max_batch_size the highest concurrency, warm-up on, response cache off),
   loaded by `vlserve bench`'s closed loop (vlserve.benchmark.runner: each level N clients, each request
   streaming exactly ``--max-tokens`` tokens with ignore_eos, the workloads alternating; ``--requests`` per
   level, default 4 per client and at least 16). Prints a Markdown table: output tokens/s, TTFT P50/P95 and
   inter-token latency per concurrency, with the GPU's name and memory, and the device's memory in use
   while serving. ``--results DIR`` also writes `vlserve bench`'s JSON there.
3. **Profile** (``--profile``): the checkpoint loaded in this process as the engine loads it
   (load_checkpoint), ``--profile-batch`` chart requests prefilled together by the engine's HFBatchRunner,
   a few decode steps to warm up, then the mean wall time of 10 steps, and one step under torch.profiler:
   the top ops by CUDA time (by CPU time on a CPU).

Loopback only; every level is bounded by its request count and a time cap, every wait by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import vlserve  # noqa: E402

from vlserve.benchmark.measure import RequestResult  # noqa: E402
from vlserve.benchmark.runner import BenchConfig, BenchRun, run_bench  # noqa: E402
from vlserve.benchmark.stats import LevelStats  # noqa: E402
from vlserve.benchmark.workloads import parse_kinds  # noqa: E402
from vlserve.demo.build_shape import build_shape_model, is_complete_shape, weight_plan  # noqa: E402
from vlserve.demo.shapes import shape_config  # noqa: E402

SHAPE = "qwen3-vl-30b-a3b"
# --tiny: the same pipeline at widths a CPU runs in seconds (vision merger out = text hidden)
TINY = {
    "text_config": {
        "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 48,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default"},
    },
    "vision_config": {
        "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 64,
        "deepstack_visual_indexes": [0], "num_position_embeddings": 256,
    },
}  # fmt: skip


def gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    text = {**(TINY["text_config"] if args.tiny else {}), "num_hidden_layers": args.layers}
    return {"text_config": text, **({"vision_config": TINY["vision_config"]} if args.tiny else {})}


def build(args: argparse.Namespace, target: Path) -> tuple[Path, dict[str, int]]:
    """The checkpoint in ``target`` (reused when complete and of the same build), and its parameter counts."""
    wanted = overrides(args)
    config = shape_config(SHAPE)[1]
    for part, values in wanted.items():
        config[part] = {**config[part], **values}
    plan, counts = weight_plan(config)
    size = sum(w.nbytes for w in plan)
    if is_complete_shape(target):
        built = json.loads((target / "config.json").read_text())
        if any(built[part].get(k) != v for part, values in wanted.items() for k, v in values.items()):
            sys.exit(f"{target} holds another build of the shape; give another --out or remove it")
        print(f"reusing the checkpoint in {target}", flush=True)
        return target, counts
    probe = target.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    print(
        f"building {SHAPE} with {args.layers} decoder layers{' (tiny widths)' if args.tiny else ''}: "
        f"{counts['total'] / 1e9:.2f} B parameters, {size / 1e9:.2f} GB of bf16 to write to {target} "
        f"({free / 1e9:.1f} GB free there); values drawn on {args.device}",
        flush=True,
    )
    started = time.perf_counter()
    path = build_shape_model(target, SHAPE, overrides=wanted, device=args.device)
    if args.device == "cuda":
        torch.cuda.empty_cache()
    print(f"built in {time.perf_counter() - started:.1f} s", flush=True)
    return path, counts


def device_line(device: str) -> str:
    versions = f"torch {torch.__version__}"
    if device != "cuda":
        return f"device: CPU ({torch.get_num_threads()} threads), {versions}"
    props = torch.cuda.get_device_properties(0)
    return f"GPU: {torch.cuda.get_device_name(0)}, {gib(props.total_memory)}; {versions}, CUDA {torch.version.cuda}"


def device_memory_in_use(device: str) -> str | None:
    """Memory in use on the whole GPU (the server's and this process's), or None on a CPU."""
    if device != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(0)
    return gib(total - free)


class Progress:
    """run_bench's observer: one line per finished level."""

    def level_started(self, label: str, level: float, planned: int | None) -> None:
        print(f"  concurrency {level:g}: {planned or '?'} requests …", flush=True)

    def result(self, label: str, level: float, result: RequestResult) -> None:
        pass

    def level_done(self, label: str, stats: LevelStats) -> None:
        print(f"  concurrency {stats.level:g}: {stats.output_tokens_per_s:.1f} output tokens/s", flush=True)


def serve_and_measure(model_dir: Path, args: argparse.Namespace) -> tuple[BenchRun, float, str | None]:
    settings = {"device": args.device, "dtype": args.dtype, "max_batch_size": max(args.concurrency)}
    started = time.perf_counter()
    with vlserve("--model", str(model_dir), "--engine", "transformers", timeout=args.timeout, **settings) as server:
        ready = time.perf_counter() - started
        print(f"server ready after {ready:.1f} s at {server.url}", flush=True)
        config = BenchConfig(
            url=server.url,
            levels=tuple(float(c) for c in args.concurrency),
            requests=args.requests,
            max_tokens=args.max_tokens,
            ignore_eos=True,
            kinds=tuple(parse_kinds(args.workload)),
            timeout=args.timeout,
        )
        bench = asyncio.run(run_bench(config, Progress(), on_status=lambda text: None))
        memory = device_memory_in_use(args.device)
    return bench, ready, memory


def table(bench: BenchRun) -> str:
    lines = [
        "| concurrency | ok/sent | output tok/s | TTFT P50 ms | TTFT P95 ms | ITL P50 ms | prompt tokens | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    for s in bench.runs[0].levels:
        prompt = "-" if s.prompt_tokens_mean is None else f"{s.prompt_tokens_mean:.0f}"
        errors = ", ".join(f"{n}× {key}" for key, n in s.errors.items()) or "-"
        lines.append(
            f"| {s.level:g} | {s.ok}/{s.requests} | {s.output_tokens_per_s:.1f} | {ms(s.ttft.p50)} | "
            f"{ms(s.ttft.p95)} | {ms(s.itl.p50)} | {prompt} | {errors} |"
        )
    return "\n".join(lines)


def chart(i: int, width: int = 1024, height: int = 768) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for k in range(8):
        top = height // 10 + (97 * (i + k)) % (height // 2)
        draw.rectangle((width * k // 9 + 8, top, width * (k + 1) // 9, height - 8), fill=(30 * k, 90, 200 - 20 * k))
    return image


def profile(model_dir: Path, args: argparse.Namespace) -> None:
    """One decode step of the engine's own loop (HFBatchRunner.step) under torch.profiler."""
    from torch.profiler import ProfilerActivity

    from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
    from vlserve.engine.transformers.checkpoint import load_checkpoint
    from vlserve.engine.transformers.prompting import PromptBuilder
    from vlserve.engine.transformers.runner import HFBatchRunner
    from vlserve.engine.transformers.scheduler import GenerationRequest

    checkpoint = load_checkpoint(model_dir, device=args.device, dtype=args.dtype)
    builder = PromptBuilder.for_checkpoint(checkpoint, model_dir, min_pixels=None, max_pixels=None)
    runner = HFBatchRunner(checkpoint.model, checkpoint.tokenizer, checkpoint.eos_token_ids, checkpoint.pad_token_id)
    params = SamplingParams(temperature=0.0, ignore_eos=True).over(checkpoint.default_sampling)
    warm, timed = 3, 10
    loop = asyncio.new_event_loop()  # never run: the requests' deltas are queued on it and dropped with it
    try:
        requests = []
        for i in range(args.profile_batch):
            request = EngineRequest.chat([ChatTurn.user(f"What are the values in chart {i}?", 1)], [chart(i)])
            prompt = builder.build_request(request)
            requests.append(GenerationRequest(prompt, params, warm + timed + 8, loop))  # none ends before the last
        cuda = checkpoint.device.type == "cuda"

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize()

        runner.add(requests)
        for _ in range(warm):
            runner.step()
        sync()
        times = []
        for _ in range(timed):
            started = time.perf_counter()
            runner.step()
            sync()
            times.append(time.perf_counter() - started)
        rows = runner.size
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=activities) as prof:
            runner.step()
            sync()
    finally:
        loop.close()
    prompt_tokens = requests[0].prompt.num_tokens
    step = statistics.mean(times)
    print(
        f"\none decode step, {rows} rows of about {prompt_tokens} prompt tokens each: "
        f"{step * 1000:.1f} ms (mean of {timed}; min {min(times) * 1000:.1f} ms), {rows / step:.1f} tokens/s"
    )
    sort = "device_time_total" if cuda else "cpu_time_total"
    print(f"top ops by {sort}:")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.profile_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=None, help="decoder layers kept of 48 (default 8; 1 with --tiny)")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16", "auto"])
    parser.add_argument("--tiny", action="store_true", help="tiny widths, for a smoke run on a CPU")
    parser.add_argument("--out", type=Path, default=None, help="keep the checkpoint here (default: a temp dir)")
    parser.add_argument("--concurrency", default="1,4,16", type=lambda s: [int(c) for c in s.split(",")])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=None, help="per level (default: 4 per client, at least 16)")
    parser.add_argument("--workload", default="chart,text")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the server start and a request")
    parser.add_argument("--serve", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--results", type=Path, default=None, help="also write vlserve bench's JSON here")
    parser.add_argument("--profile", action="store_true", help="profile one decode step in this process")
    parser.add_argument("--profile-batch", type=int, default=4, help="rows in the profiled decode step")
    parser.add_argument("--profile-rows", type=int, default=25)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU is visible")
    if args.layers is None:
        args.layers = 1 if args.tiny else 8
    if not 1 <= args.layers <= 48:
        sys.exit("--layers must be between 1 and 48")
    if args.device == "cpu" and not args.tiny:
        print("note: the full widths on a CPU take minutes to build and are slow to serve; --tiny is the smoke run")

    temp = None if args.out else tempfile.TemporaryDirectory(prefix="vlserve-gpu-shape-")
    try:
        target = args.out if args.out else Path(temp.name) / f"random-{SHAPE}-{args.layers}l"
        model_dir, counts = build(args, target.expanduser().absolute())
        header = [
            device_line(args.device),
            f"model: {SHAPE} architecture, {args.layers} of 48 decoder layers"
            f"{' at tiny widths' if args.tiny else ''}, {counts['total'] / 1e9:.2f} B parameters "
            f"(random weights), served as {args.dtype}",
        ]
        if args.serve:
            bench, ready, memory = serve_and_measure(model_dir, args)
            header.append(
                f"server: ready after {ready:.1f} s; {args.max_tokens} output tokens per request (ignore_eos), "
                f"workload {args.workload}" + (f"; device memory in use while serving {memory}" if memory else "")
            )
            print("\n" + "\n".join(header) + "\n\n" + table(bench))
            if args.results is not None:
                from vlserve.benchmark.report import output_paths, write_json

                json_path, _ = output_paths(args.results, bench.started)
                write_json(bench, json_path)
                print(f"results: {json_path}")
        else:
            print("\n" + "\n".join(header))
        if args.profile:
            profile(model_dir, args)
    finally:
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":
    main()
