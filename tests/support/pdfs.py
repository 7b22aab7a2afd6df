"""PDFs for tests, made on the spot: pages from images (demo charts by default), or a page count only."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import pikepdf
from PIL import Image, ImageDraw

from vlserve.demo.charts import Chart, sample_chart


def pdf_bytes(pages: Iterable[Image.Image]) -> bytes:
    images = [page.convert("RGB") for page in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=72)
    return buffer.getvalue()


def chart_pdf(seeds: Iterable[int]) -> tuple[bytes, list[Chart]]:
    """One demo chart per page, and the ground truth of each."""
    drawn = [sample_chart(seed) for seed in seeds]
    return pdf_bytes(image for _, image in drawn), [chart for chart, _ in drawn]


def text_pdf(pages: int) -> bytes:
    """``pages`` small pages, each saying its number."""
    images = []
    for number in range(1, pages + 1):
        image = Image.new("RGB", (200, 260), "white")
        ImageDraw.Draw(image).text((20, 20), f"Page {number}", fill="black")
        images.append(image)
    return pdf_bytes(images)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def encrypted(pdf: bytes) -> bytes:
    """The same PDF, locked with a user password."""
    buffer = io.BytesIO()
    with pikepdf.open(io.BytesIO(pdf)) as source:
        source.save(buffer, encryption=pikepdf.Encryption(owner="owner", user="secret"))
    return buffer.getvalue()
