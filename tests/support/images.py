"""Images the tests draw themselves: bar charts of varied sizes and colours, encoded as files or data URLs."""

from __future__ import annotations

import base64
import io
import random

import numpy as np
from PIL import Image, ImageDraw


def chart(seed: int, size: tuple[int, int] | None = None) -> Image.Image:
    rng = random.Random(seed)
    width, height = size or (rng.randint(60, 400), rng.randint(60, 300))
    image = Image.new("RGB", (width, height), tuple(rng.randint(200, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    bars = rng.randint(3, 6)
    step = width // (bars + 1)
    for i in range(bars):
        top = rng.randint(height // 10, height * 9 // 10)
        colour = tuple(rng.randint(0, 180) for _ in range(3))
        draw.rectangle((step * i + 4, top, step * i + step - 2, height - 2), fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def solid(size: tuple[int, int] = (64, 48), fmt: str = "PNG", color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A plain one-colour image, encoded."""
    return encode(Image.new("RGB", size, color), fmt)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def chart_url(seed: int, fmt: str = "PNG") -> str:
    return data_url(encode(chart(seed), fmt), f"image/{fmt.lower()}")


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth colour with noise: every pixel differs, as in a photograph."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 255 / (width + height)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
