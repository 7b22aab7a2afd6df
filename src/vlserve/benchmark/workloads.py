"""The requests `vlserve bench` sends: generated in-process, reproducible from a seed.

Kinds: ``text`` (a paragraph and a question), ``chart`` (the demo's bar and line charts, PNG), ``photo`` (a
noisy colour gradient with soft blobs, JPEG), ``page`` (an A4 page of text lines at 150 dpi, PNG) and ``multi``
(a chart, a photo and a page in one request). A pool of distinct prompts is made before the load starts, so
encoding never competes with the measurement; request number ``n`` takes pool entry ``n % len(pool)`` and
carries ``n`` in its text, so no two requests of a run are identical (a server's response cache never
answers them), while a pool's images may come round again (an image cache may).
"""

from __future__ import annotations

import base64
import io
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = ("text", "chart", "photo", "page", "multi")
# Longest side in pixels of each kind's images when --image-size is not given; multi: per image.
DEFAULT_SIZES = {"chart": 560, "photo": 1280, "page": 1754, "multi": 768}
A4_RATIO = 297 / 210
POOL_SIZE = 32
_WORD_TEXT = (
    "revenue quarter growth market order shipment invoice total region north south east west customer supplier "
    "contract balance account payment delivery warehouse stock price margin forecast budget report summary table "
    "figure result analysis review period annual monthly weekly index level rate volume share cost profit"
)
WORDS = tuple(_WORD_TEXT.split())
QUESTIONS = {
    "text": "Summarise the paragraph above in one sentence.",
    "chart": "Which category has the highest value in this chart?",
    "photo": "Describe this photo.",
    "page": "Transcribe the first lines of this page.",
    "multi": "What do these images show? Answer for each.",
}


class WorkloadError(ValueError):
    """A workload name or image size the command line got wrong."""


@dataclass(frozen=True)
class EncodedImage:
    mime: str
    data: bytes
    data_url: str  # made once: requests reuse it

    @classmethod
    def of(cls, mime: str, data: bytes) -> EncodedImage:
        return cls(mime, data, f"data:{mime};base64,{base64.b64encode(data).decode()}")

    def pil(self) -> Image.Image:
        return Image.open(io.BytesIO(self.data)).convert("RGB")


@dataclass(frozen=True)
class Prompt:
    kind: str
    text: str
    images: tuple[EncodedImage, ...]

    def question(self, n: int) -> str:
        """The text of request number ``n``: unique within a run."""
        return f"[request {n}] {self.text}"

    def messages(self, n: int) -> list[dict[str, Any]]:
        """The OpenAI chat messages of request number ``n``: images first, then the question."""
        if not self.images:
            return [{"role": "user", "content": self.question(n)}]
        parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": i.data_url}} for i in self.images]
        return [{"role": "user", "content": [*parts, {"type": "text", "text": self.question(n)}]}]


def parse_kinds(value: str) -> list[str]:
    """``"chart,photo"`` → the kinds, each checked."""
    kinds = [k.strip().lower() for k in value.split(",") if k.strip()]
    if not kinds:
        raise WorkloadError("--workload is empty; use one or more of " + ", ".join(KINDS))
    for kind in kinds:
        if kind not in KINDS:
            raise WorkloadError(f"unknown workload {kind!r}; use one or more of {', '.join(KINDS)}")
    return kinds


def build_pool(
    kinds: list[str], *, seed: int = 0, image_size: int | None = None, size: int = POOL_SIZE
) -> list[Prompt]:
    """``size`` distinct prompts, the kinds taking turns; the same arguments give the same bytes."""
    if image_size is not None and not 16 <= image_size <= 8192:
        raise WorkloadError(f"--image-size {image_size} is out of range; use 16 to 8192 pixels")
    return [_prompt(kinds[i % len(kinds)], seed * 100_003 + i, image_size) for i in range(size)]


def _prompt(kind: str, seed: int, image_size: int | None) -> Prompt:
    rng = random.Random(seed)
    if kind == "text":
        return Prompt(kind, _paragraph(rng, 120) + "\n\n" + QUESTIONS["text"], ())
    longest = image_size or DEFAULT_SIZES[kind]
    if kind == "multi":
        images = (_chart(rng, longest), _photo(rng, longest), _page(rng, longest))
    else:
        images = ({"chart": _chart, "photo": _photo, "page": _page}[kind](rng, longest),)
    return Prompt(kind, QUESTIONS[kind], images)


def _paragraph(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _encode(image: Image.Image, fmt: str) -> EncodedImage:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, "JPEG", quality=90)
        return EncodedImage.of("image/jpeg", out.getvalue())
    image.save(out, "PNG", compress_level=3)
    return EncodedImage.of("image/png", out.getvalue())


def _fit(image: Image.Image, longest: int) -> Image.Image:
    scale = longest / max(image.size)
    if abs(scale - 1) < 1e-3:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _chart(rng: random.Random, longest: int) -> EncodedImage:
    from vlserve.demo.charts import sample_chart

    _, image = sample_chart(rng.randrange(2**31))
    return _encode(_fit(image.convert("RGB"), longest), "PNG")


def _photo(rng: random.Random, longest: int) -> EncodedImage:
    """A photo-like image: a four-corner colour gradient with soft blobs (drawn small, blurred, scaled up:
    smooth like an out-of-focus background), then sensor-like noise at full size."""
    width, height = longest, max(1, round(longest * 3 / 4))
    gen = np.random.default_rng(rng.randrange(2**32))
    small_w, small_h = max(2, width // 8), max(2, height // 8)
    corners = gen.uniform(0, 255, size=(2, 2, 3))
    ys = np.linspace(0, 1, small_h)[:, None, None]
    xs = np.linspace(0, 1, small_w)[None, :, None]
    top = corners[0, 0] * (1 - xs) + corners[0, 1] * xs
    bottom = corners[1, 0] * (1 - xs) + corners[1, 1] * xs
    small = Image.fromarray((top * (1 - ys) + bottom * ys).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(small)
    for _ in range(6):
        x, y = gen.uniform(0, small_w), gen.uniform(0, small_h)
        r = gen.uniform(0.05, 0.2) * small_w
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in gen.integers(0, 256, 3)))
    small = small.filter(ImageFilter.GaussianBlur(radius=2))
    base = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR), dtype=np.int16)
    noisy = base + gen.integers(-10, 11, size=base.shape, dtype=np.int16)
    return _encode(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"), "JPEG")


def _page(rng: random.Random, longest: int) -> EncodedImage:
    """An A4 page (portrait) of text: a title, then lines of words in paragraphs."""
    height = longest
    width = max(1, round(height / A4_RATIO))
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    line = max(4, height // 60)
    margin = width // 10
    draw.text((margin, margin), _paragraph(rng, 4).upper(), fill="black", font=_font(round(line * 1.3)))
    font = _font(max(4, round(line * 0.7)))
    y = margin + 3 * line
    while y < height - margin:
        if rng.random() < 0.12:  # a paragraph break
            y += line
            continue
        text = _paragraph(rng, rng.randint(6, 14))
        draw.text((margin, y), text, fill=(20, 20, 20), font=font)
        y += line
    return _encode(page, "PNG")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)
