"""Rendering of synthetic charts with PIL: fonts, layout, styles, noise and JPEG re-encoding.

Fonts: Pillow's built-in scalable font (`ImageFont.load_default(size=...)`, Latin only) is always
available; a fixed allow-list of common TrueType fonts (DejaVu, Liberation, Noto, WenQuanYi, ...) is
added when installed. Chinese text is drawn only with a font that really covers CJK glyphs; when the
machine has none, `has_cjk_font()` is false and the chart sampler uses Latin categories only. The pool
therefore depends on the machine: output is deterministic per machine (and Pillow version), and
identical across machines when `VLSERVE_DEMO_FONTS=builtin` restricts the pool to the built-in font.
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from vlserve.demo.charts import Chart

__all__ = [
    "FONTS_ENV",
    "PLOT_MIN_HEIGHT",
    "SIZE_RANGE",
    "Y_MAX",
    "draw_chart",
    "font_sources",
    "has_cjk",
    "has_cjk_font",
]

Y_MAX = 50  # fixed y-axis maximum; every chart value lies in 0..Y_MAX
Y_STEP = 10  # labelled tick every 10
PLOT_MIN_HEIGHT = 120  # px between the 0 and 50 gridlines: >= 2.4 px per unit
# (width range, height range), inclusive. Sized for the demo model's 32-64 visual tokens (32-64 K pixels), so
# that resizing into that budget shrinks the text by at most ~0.8x and a digit stays >= ~11 px tall.
SIZE_RANGE = ((240, 400), (180, 250))
MIN_FONT_SIZE = 13  # labels shrink from the drawn size (16-21 px) towards this until they fit
_LABEL_GAP = 10  # px between neighbouring category labels, at least
FONTS_ENV = "VLSERVE_DEMO_FONTS"

_FontLike = ImageFont.FreeTypeFont | ImageFont.ImageFont
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/System/Library/Fonts", "/Library/Fonts")
_LATIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSerif.ttf",
    "LiberationSans-Regular.ttf",
    "LiberationSans-Bold.ttf",
    "LiberationSerif-Regular.ttf",
)
_CJK_FONTS = (
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Regular.otf",
    "NotoSansSC-Regular.otf",
    "NotoSansSC-Regular.ttf",
    "wqy-microhei.ttc",
    "wqy-zenhei.ttc",
    "DroidSansFallbackFull.ttf",
    "uming.ttc",
    "ukai.ttc",
    "PingFang.ttc",
    "STHeiti Light.ttc",
)
_BAR_COLOURS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (23, 190, 207), (70, 90, 160), (200, 80, 40), (60, 60, 60), (0, 128, 128), (180, 50, 120),
)  # fmt: skip


def has_cjk(text: str) -> bool:
    """True when `text` contains a CJK ideograph or full-width punctuation."""
    return any("\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" for ch in text)


def _covers_cjk(path: str) -> bool:
    try:
        font = ImageFont.truetype(path, 24)
    except OSError:
        return False
    glyph, missing = (_glyph_pixels(font, ch) for ch in ("中", "\uffff"))
    return bool(glyph.strip(b"\x00")) and glyph != missing


def _glyph_pixels(font: ImageFont.FreeTypeFont, ch: str) -> bytes:
    """The glyph's rendered pixels (drawn, not read from the mask object: Pillow 13's has no ``tobytes``)."""
    left, top, right, bottom = font.getbbox(ch)
    image = Image.new("L", (max(1, right - left), max(1, bottom - top)))
    ImageDraw.Draw(image).text((-left, -top), ch, font=font, fill=255)
    return image.tobytes()


@cache
def font_sources() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(Latin font paths, CJK font paths) found on this machine; "" stands for Pillow's built-in font."""
    if os.environ.get(FONTS_ENV, "").strip().lower() == "builtin":
        return ("",), ()
    found: dict[str, str] = {}
    wanted = set(_LATIN_FONTS) | set(_CJK_FONTS)
    for root in _FONT_DIRS:
        if not Path(root).is_dir():
            continue
        for dirpath, _dirs, files in sorted(os.walk(root)):
            for name in sorted(files):
                if name in wanted and name not in found:
                    found[name] = str(Path(dirpath) / name)
    latin = ("", *(found[n] for n in _LATIN_FONTS if n in found))
    cjk = tuple(found[n] for n in _CJK_FONTS if n in found and _covers_cjk(found[n]))
    return latin, cjk


def has_cjk_font() -> bool:
    """Whether Chinese text can be drawn on this machine."""
    return bool(font_sources()[1])


@cache
def _font(path: str, size: int) -> _FontLike:
    if not path:
        try:
            return ImageFont.load_default(size=size)
        except (TypeError, ImportError):  # Pillow without FreeType: fixed-size bitmap font
            return ImageFont.load_default()
    return ImageFont.truetype(path, size)


def _text_size(font: _FontLike, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


@dataclass(frozen=True)
class _Style:
    font_path: str
    size: int
    title_size: int
    colour: tuple[int, int, int]
    background: str
    grid: bool
    minor_grid: bool
    bar_fraction: float
    line_width: int
    marker: str
    marker_radius: int


def _style(chart: Chart, rng: random.Random) -> _Style:
    latin, cjk = font_sources()
    texts = [*chart.categories, chart.title or ""]
    if any(has_cjk(t) for t in texts):
        if not cjk:
            raise ValueError("chart has Chinese text but no CJK font is installed")
        font_path = rng.choice(cjk)
    else:
        font_path = rng.choice(latin)
    return _Style(
        font_path=font_path,
        size=rng.randint(16, 21),
        title_size=rng.randint(16, 20),
        colour=rng.choice(_BAR_COLOURS),
        background=rng.choice(("white", "white", "offwhite", "grey", "gradient")),
        grid=rng.random() < 0.6,
        minor_grid=rng.random() < 0.25,
        bar_fraction=rng.uniform(0.45, 0.8),
        line_width=rng.randint(2, 3),
        marker=rng.choice(("circle", "square", "diamond")),
        marker_radius=rng.randint(3, 4),
    )


def _background(size: tuple[int, int], kind: str, rng: random.Random) -> Image.Image:
    width, height = size
    if kind == "white":
        return Image.new("RGB", size, (255, 255, 255))
    if kind == "offwhite":
        return Image.new("RGB", size, (rng.randint(246, 255), rng.randint(244, 252), rng.randint(236, 248)))
    if kind == "grey":
        g = rng.randint(232, 244)
        return Image.new("RGB", size, (g, g, g + rng.randint(0, 6)))
    top = np.array([rng.randint(240, 255) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randint(222, 245) for _ in range(3)], dtype=np.float32)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    rows = top[None, None, :] * (1 - t) + bottom[None, None, :] * t
    return Image.fromarray(np.broadcast_to(rows, (height, width, 3)).round().astype(np.uint8), "RGB")


def _degrade(image: Image.Image, rng: random.Random) -> tuple[Image.Image, int, float]:
    """Light Gaussian noise on a quarter of images, JPEG re-encoding on ~30 %: (image, quality or 0, sigma)."""
    width, height = image.size
    sigma = rng.uniform(1.5, 5.0) if rng.random() < 0.25 else 0.0
    if sigma:
        noise_rng = np.random.default_rng(rng.getrandbits(63))
        pixels = np.asarray(image, dtype=np.float32) + noise_rng.normal(0.0, sigma, (height, width, 3))
        image = Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8), "RGB")
    quality = rng.randint(60, 95) if rng.random() < 0.3 else 0
    if quality:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=quality)
        image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return image, quality, sigma


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, style: _Style) -> None:
    r = style.marker_radius
    if style.marker == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=style.colour, outline=style.colour)
    elif style.marker == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=style.colour)
    else:
        draw.polygon([(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], fill=style.colour)


def draw_chart(chart: Chart, rng: random.Random) -> Image.Image:
    """Render `chart` as an RGB image; every style choice is drawn from `rng`.

    The image's `info` records `"jpeg_quality"` (0 when not re-encoded), `"noise_sigma"` and the layout, in
    pixels: `"plot_x"` (left and right edge of the plot area, one equal slot per category), `"category_boxes"`,
    `"value_boxes"` (empty when unlabelled) and `"marks"` (the top of each bar or line point).
    """
    style = _style(chart, rng)
    n = len(chart.categories)
    size = style.size
    while True:  # the largest size up to the drawn one at which every category label fits its slot
        font = _font(style.font_path, size)
        label_w = max(_text_size(font, c)[0] for c in chart.categories)
        tick_w = _text_size(font, str(Y_MAX))[0]
        if size <= MIN_FONT_SIZE or tick_w + 40 + n * (label_w + _LABEL_GAP) <= SIZE_RANGE[0][1]:
            break
        size -= 1
    line_h = _text_size(font, "0123456789Q")[1]

    title_h = 0
    title_font = _font(style.font_path, style.title_size)
    if chart.title:
        title_h = _text_size(title_font, chart.title)[1] + rng.randint(8, 12)
    top = title_h + line_h + rng.randint(6, 12)  # room for the value label above a 50
    bottom = line_h + rng.randint(8, 14)
    left = tick_w + rng.randint(12, 22)
    right = rng.randint(8, 20)
    slot_min = label_w + _LABEL_GAP
    (w_lo, w_hi), (h_lo, h_hi) = SIZE_RANGE
    width = rng.randint(max(w_lo, min(w_hi, left + right + n * slot_min)), w_hi)
    height = rng.randint(max(h_lo, min(h_hi, top + bottom + PLOT_MIN_HEIGHT)), h_hi)
    if chart.title:  # keep the title inside the image
        width = max(width, min(w_hi, _text_size(title_font, chart.title)[0] + 16))

    image = _background((width, height), style.background, rng)
    draw = ImageDraw.Draw(image)
    ink = (rng.randint(30, 80),) * 3
    x0, x1, y_zero, y_top = left, width - right, height - bottom, top
    unit = (y_zero - y_top) / Y_MAX

    def y_of(value: float) -> float:
        return y_zero - value * unit

    grid_colour = (205, 205, 205) if style.background != "grey" else (250, 250, 250)
    if style.minor_grid:
        for v in range(5, Y_MAX, Y_STEP):
            draw.line((x0, y_of(v), x1, y_of(v)), fill=tuple(min(255, c + 20) for c in grid_colour), width=1)
    for v in range(0, Y_MAX + 1, Y_STEP):
        y = round(y_of(v))
        if style.grid and v:
            draw.line((x0, y, x1, y), fill=grid_colour, width=1)
        draw.line((x0 - 4, y, x0, y), fill=ink, width=1)
        draw.text((x0 - 6, y), str(v), font=font, fill=ink, anchor="rm")
    draw.line((x0, y_top - 4, x0, y_zero), fill=ink, width=1)
    draw.line((x0, y_zero, x1, y_zero), fill=ink, width=1)

    slot = (x1 - x0) / n
    centres = [x0 + slot * (i + 0.5) for i in range(n)]
    category_boxes = []
    for cx, name in zip(centres, chart.categories, strict=True):
        draw.line((cx, y_zero, cx, y_zero + 3), fill=ink, width=1)
        draw.text((cx, y_zero + 5), name, font=font, fill=ink, anchor="mt")
        category_boxes.append(draw.textbbox((cx, y_zero + 5), name, font=font, anchor="mt"))
    marks = [(cx, y_of(v)) for cx, v in zip(centres, chart.values, strict=True)]

    if chart.kind == "bar":
        half = max(3.0, slot * style.bar_fraction / 2)
        for cx, v in zip(centres, chart.values, strict=True):
            if v:
                draw.rectangle((round(cx - half), round(y_of(v)), round(cx + half), y_zero - 1), fill=style.colour)
    else:
        points = [(cx, y_of(v)) for cx, v in zip(centres, chart.values, strict=True)]
        draw.line(points, fill=style.colour, width=style.line_width, joint="curve")
        for x, y in points:
            _marker(draw, x, y, style)

    value_boxes = []
    if chart.labelled:
        bg = image.getpixel((2, 2))
        for cx, v in zip(centres, chart.values, strict=True):
            y = y_of(v) - (style.marker_radius + 3 if chart.kind == "line" else 3)
            box = draw.textbbox((cx, y), str(v), font=font, anchor="mb")
            if chart.kind == "line":  # keep the label readable over the line
                draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=bg)
            draw.text((cx, y), str(v), font=font, fill=ink, anchor="mb")
            value_boxes.append(box)

    if chart.title:
        draw.text((width / 2, 5), chart.title, font=title_font, fill=ink, anchor="mt")

    image, quality, sigma = _degrade(image, rng)
    image.info = {
        "jpeg_quality": quality, "noise_sigma": round(sigma, 3), "plot_x": (x0, x1),
        "category_boxes": category_boxes, "value_boxes": value_boxes, "marks": marks,
    }  # fmt: skip
    return image
