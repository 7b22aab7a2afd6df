"""The image path: transformers' image processor against vlserve's own, and what the gateway's resize costs.

    .venv/bin/python bench/image_path.py [--rounds 7] [--images 16]

Photo-like JPEGs (a gradient, coloured discs, blurred, then sensor grain) encoded at quality 90, and
Qwen3-VL's image processor settings (patch 16, merge 2, temporal patch 2, mean and std 0.5) at a budget of
64 to 1280 visual tokens. Every figure is the best of ``--rounds`` rounds, the variants interleaved in each
round so that a busy machine slows them alike.

1. One core (torch and the decode on one thread), a 1600x1200 JPEG (1230 visual tokens), images/s:
   - "transformers": what a naive script does: ``Image.open`` + ``load`` in full, then the processor
     (``Qwen2VLImageProcessorPil``: RGB, Pillow resize, rescale, normalise, patchify in numpy);
   - "vlserve": what the transformers engine does: ``decode_image`` (JPEG DCT scaling where the image is at
     least twice the budget's side), ``image_inputs`` (one torch resize to the processor's size, 8-bit
     patchify, one multiply-add into the batch tensor).
2. vlserve's path on 2 worker threads against 1 (each on one torch thread), ``--images`` images a round, and
   on 2 processes: the ceiling with no GIL, against which threads are compared when other work takes cores.
3. The gateway (remote engine) on a 4000x3000 photo: process CPU seconds of the whole resize path, from the
   client's data URL to the data URL sent upstream (``decode_data_url``, ``decode_image``, ``inline_image``),
   decoded in full as the issue describes, as the code does (1/2 DCT scale, Pillow resize), and with torch's
   resize in place of Pillow's.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import multiprocessing
import random
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import torch
from PIL import Image, ImageDraw, ImageFilter
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from vlserve.engine.base import MediaItem
from vlserve.engine.remote.media import encode as encode_upstream
from vlserve.engine.remote.media import inline_image
from vlserve.engine.transformers.image_inputs import ImageGeometry, image_inputs
from vlserve.media.data_url import decode_data_url
from vlserve.media.images import ImageLimits, decode_image
from vlserve.media.resize import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, ImageBudget

BUDGET = ImageBudget(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS, 32)
SIZE = {"shortest_edge": BUDGET.min_pixels, "longest_edge": BUDGET.max_pixels}
LIMITS = ImageLimits(max_bytes=50 * 1024 * 1024, max_pixels=50_000_000)
# Qwen3-VL's preprocessor_config.json (the class's own defaults are Qwen2-VL's CLIP mean and std)
QWEN3_VL = dict(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def photo(size: tuple[int, int], seed: int = 1) -> bytes:
    """A JPEG of a photo-like picture: smooth shapes under sensor grain (every pixel differs)."""
    rng = random.Random(seed)
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(width * height // 30000):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randint(10, max(20, width // 20))
        draw.ellipse((x, y, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(2))
    image = Image.blend(image, Image.effect_noise(size, 40).convert("RGB"), 0.12)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def best_rate(
    variants: dict[str, Callable[[], int]], rounds: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Items per second of each variant (it returns how many it did), best of ``rounds``, interleaved; by the
    wall clock, or by ``time.process_time`` (CPU seconds: what a shared machine's other work does not add to)."""
    best = dict.fromkeys(variants, 0.0)
    for _ in range(rounds):
        for name, run in variants.items():
            started = clock()
            done = run()
            best[name] = max(best[name], done / (clock() - started))
    return best


def best_cpu(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Process CPU seconds of each variant, best of ``rounds``, interleaved."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, run in variants.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    return best


def one_core(rounds: int) -> None:
    data = photo((1600, 1200))
    processor = Qwen2VLImageProcessorPil(**QWEN3_VL, size=SIZE)
    geometry = ImageGeometry.of(processor)
    assert geometry is not None

    def transformers() -> int:
        image = Image.open(io.BytesIO(data))
        image.load()
        processor(images=[image], size=SIZE, return_tensors="pt")
        return 1

    def ours() -> int:
        image_inputs([decode_image(data, LIMITS, param="x", target_pixels=BUDGET.max_pixels).image], BUDGET, geometry)
        return 1

    def repeat(run: Callable[[], int], times: int = 5) -> Callable[[], int]:
        return lambda: sum(run() for _ in range(times))

    variants = {"transformers": repeat(transformers), "vlserve": repeat(ours)}
    tokens = BUDGET.tokens(1600, 1200)
    print(f"\n1600x1200 JPEG ({len(data) / 1e6:.2f} MB) at {tokens} visual tokens, one thread")
    for clock in (time.perf_counter, time.process_time):
        rates = best_rate(variants, rounds, clock)
        for name, rate in rates.items():
            print(f"  {clock.__name__:13s} {name:13s} {rate:6.1f} images/s  {1000 / rate:6.1f} ms/image")
        print(f"  {clock.__name__:13s} vlserve / transformers: {rates['vlserve'] / rates['transformers']:.2f}x")


@functools.cache
def _geometry() -> ImageGeometry:
    geometry = ImageGeometry.of(Qwen2VLImageProcessorPil(**QWEN3_VL, size=SIZE))
    assert geometry is not None
    return geometry


def _one_image(data: bytes) -> None:
    """vlserve's path for one image: what a worker does (module level, so that a process pool can run it too)."""
    image = decode_image(data, LIMITS, param="x", target_pixels=BUDGET.max_pixels).image
    image_inputs([image], BUDGET, _geometry())


def _one_torch_thread() -> None:
    torch.set_num_threads(1)


def workers(rounds: int, images: int) -> None:
    """1 worker thread against 2, and 2 processes as the ceiling with no GIL at all: on a machine that other work
    keeps busy, threads close to processes say the path does not hold the GIL, whatever the cores give."""
    blobs = [photo((1600, 1200), seed) for seed in range(4)]
    batch = [blobs[i % len(blobs)] for i in range(images)]
    spawn = multiprocessing.get_context("spawn")
    pools: dict[str, Executor] = {
        "1 thread": ThreadPoolExecutor(1),
        "2 threads": ThreadPoolExecutor(2),
        "2 processes": ProcessPoolExecutor(2, mp_context=spawn, initializer=_one_torch_thread),
    }
    for pool in pools.values():
        list(pool.map(_one_image, batch[:2]))  # started and warm

    def run(pool: Executor) -> Callable[[], int]:
        return lambda: len(list(pool.map(_one_image, batch)))

    def busy(pool: Executor) -> float:
        """CPU seconds per wall second of this process while ``pool`` works: 2.0 when it had both cores."""
        wall, cpu = time.perf_counter(), time.process_time()
        run(pool)()
        return (time.process_time() - cpu) / (time.perf_counter() - wall)

    rates = best_rate({name: run(pool) for name, pool in pools.items()}, rounds)
    print(f"\nvlserve's path, {images} images a round, workers on one torch thread each")
    for name, rate in rates.items():
        print(f"  {name:12s} {rate:6.1f} images/s")
    one, two = busy(pools["1 thread"]), busy(pools["2 threads"])
    print(f"  2 threads / 1 thread: {rates['2 threads'] / rates['1 thread']:.2f}x; "
          f"2 threads / 2 processes: {rates['2 threads'] / rates['2 processes']:.2f}; "
          f"CPU s per wall s, 1 and 2 threads: {one:.2f} / {two:.2f}")  # fmt: skip
    for pool in pools.values():
        pool.shutdown()


def gateway(rounds: int) -> None:
    data = photo((4000, 3000))
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")

    def path(*, target: int | None, backend: str) -> Callable[[], object]:
        def run() -> object:
            raw = decode_data_url(url, max_bytes=LIMITS.max_bytes, param="x")
            loaded = decode_image(raw, LIMITS, param="x", target_pixels=target)
            if backend == "pillow":
                item = MediaItem(loaded.image, source=loaded.source, source_type=loaded.source_type)
                return inline_image(item, BUDGET, "auto")
            fitted = BUDGET.fit(loaded.image, param="x", backend="torch")  # inline_image with torch's resize
            return base64.b64encode(encode_upstream(fitted, "jpeg"))

        return run

    variants = {
        "full decode, Pillow resize (the issue's 'today')": path(target=None, backend="pillow"),
        "1/2 DCT scale, Pillow resize (the gateway)": path(target=BUDGET.max_pixels, backend="pillow"),
        "1/2 DCT scale, torch resize": path(target=BUDGET.max_pixels, backend="torch"),
    }
    cpu = best_cpu(variants, rounds)
    print(f"\ngateway: 4000x3000 JPEG photo ({len(data) / 1e6:.2f} MB) to {BUDGET.size_for(4000, 3000)}, CPU ms")
    first = next(iter(cpu.values()))
    for name, seconds in cpu.items():
        print(f"  {name:50s} {seconds * 1000:6.1f} ms  ({first / seconds:.2f}x less than the first)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    one_core(args.rounds)
    workers(args.rounds, args.images)
    gateway(args.rounds)


if __name__ == "__main__":
    main()
