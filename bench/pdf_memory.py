"""Render every page of a large generated PDF with ``iter_pages`` and show that memory stays flat.

    .venv/bin/python bench/pdf_memory.py [--pages 300] [--longest-side 1288] [--dpi 150]

Writes an A4 PDF into a temporary folder one page at a time (each page a JPEG "scan" with drawn
text, a table and bars, plus a line of real PDF text), so the generator holds one image at most.
Then renders all pages and prints a markdown table of pages/s and peak RSS (``ru_maxrss``) before
rendering, after the first 10 pages and after all of them. In-process; no network.
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageDraw, ImageFont

from vlserve.media.pdf import inspect_pdf, iter_pages

A4 = (595, 842)  # points
WORDS = ["invoice", "total", "amount", "due", "vendor", "quantity", "price", "tax", "date", "reference", "balance"]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def scan(number: int, dpi: int) -> bytes:
    """One A4 page image as JPEG: heading, paragraph lines, a table and a bar chart, varied by ``number``."""
    size = (A4[0] * dpi // 72, A4[1] * dpi // 72)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    unit = size[0] // 40
    font = ImageFont.load_default(size=unit)
    draw.text((2 * unit, 2 * unit), f"Document page {number}", fill="black", font=ImageFont.load_default(2 * unit))
    for line in range(12):
        words = " ".join(WORDS[(number + line + k) % len(WORDS)] for k in range(9))
        draw.text((2 * unit, (6 + 1.6 * line) * unit), words, fill=(40, 40, 40), font=font)
    top = 27 * unit
    for row in range(6):
        for col in range(4):
            box = (
                2 * unit + col * 9 * unit,
                top + row * 2 * unit,
                11 * unit + col * 9 * unit,
                top + (row + 1) * 2 * unit,
            )
            draw.rectangle(box, outline="black", width=2)
            draw.text(
                (box[0] + unit // 2, box[1] + unit // 2),
                f"{(number * 7 + row * 13 + col) % 1000}",
                fill="black",
                font=font,
            )
    base = size[1] - 4 * unit
    for bar in range(8):
        height = (3 + (number * 3 + bar * 11) % 10) * unit
        draw.rectangle(
            (4 * unit + bar * 4 * unit, base - height, 6 * unit + bar * 4 * unit, base),
            fill=(30 * bar, 90, 220 - 25 * bar),
        )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


class PdfWriter:
    """A minimal streaming PDF writer: objects go to the file as they come, the page tree at the end."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.offsets: dict[int, int] = {}
        self.kids: list[int] = []
        file.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        self.object(3, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")

    def object(self, number: int, body: bytes, stream: bytes | None = None) -> None:
        self.offsets[number] = self.file.tell()
        self.file.write(b"%d 0 obj\n" % number + body)
        if stream is not None:
            self.file.write(b"\nstream\n" + stream + b"\nendstream")
        self.file.write(b"\nendobj\n")

    def page(self, jpeg: bytes, width: int, height: int, label: str) -> None:
        first = 4 + 3 * len(self.kids)
        image_head = b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB " % (width, height)
        self.object(first + 2, image_head + b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>" % len(jpeg), jpeg)
        text = f"BT /F1 11 Tf 36 24 Td ({label}) Tj ET".encode("latin-1")
        content = b"q %d 0 0 %d 0 0 cm /Im0 Do Q " % A4 + text
        self.object(first + 1, b"<< /Length %d >>" % len(content), content)
        resources = b"<< /Font << /F1 3 0 R >> /XObject << /Im0 %d 0 R >> >>" % (first + 2)
        page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources " % A4 + resources
        self.object(first, page + b" /Contents %d 0 R >>" % (first + 1))
        self.kids.append(first)

    def finish(self) -> None:
        kids = b" ".join(b"%d 0 R" % kid for kid in self.kids)
        self.object(2, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(self.kids)))
        self.object(1, b"<< /Type /Catalog /Pages 2 0 R >>")
        start = self.file.tell()
        size = max(self.offsets) + 1
        self.file.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
        self.file.write(b"".join(b"%010d 00000 n \n" % self.offsets[n] for n in range(1, size)))
        self.file.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, start))


def write_pdf(path: Path, pages: int, dpi: int) -> None:
    pixels = (A4[0] * dpi // 72, A4[1] * dpi // 72)
    with path.open("wb") as file:
        writer = PdfWriter(file)
        for number in range(1, pages + 1):
            writer.page(scan(number, dpi), *pixels, f"Page {number} of {pages}")
        writer.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--longest-side", type=int, default=1288)
    parser.add_argument("--dpi", type=int, default=150, help="resolution of the page images inside the PDF")
    args = parser.parse_args()
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.pdf"
        start = time.perf_counter()
        write_pdf(path, args.pages, args.dpi)
        rows.append(("generate PDF", args.pages, time.perf_counter() - start, peak_rss_mib()))
        mib = path.stat().st_size / (1024 * 1024)
        assert inspect_pdf(path, max_pages=args.pages) == args.pages
        rows.append(("before rendering", 0, 0.0, peak_rss_mib()))
        start = time.perf_counter()
        for index, image in iter_pages(path, range(args.pages), longest_side=args.longest_side):
            assert max(image.size) == args.longest_side
            if index == 9:
                rows.append(("after 10 pages", 10, time.perf_counter() - start, peak_rss_mib()))
        rows.append(("after all pages", args.pages, time.perf_counter() - start, peak_rss_mib()))
    print(
        f"{args.pages} A4 pages ({args.dpi} dpi JPEG scans, {mib:.1f} MiB PDF) -> longest side {args.longest_side} px\n"
    )
    print("| phase | pages | seconds | pages/s | peak RSS (MiB) |\n|---|---:|---:|---:|---:|")
    for phase, count, seconds, rss in rows:
        rate = f"{count / seconds:.1f}" if seconds else "-"
        print(f"| {phase} | {count} | {seconds:.2f} | {rate} | {rss:.0f} |")


if __name__ == "__main__":
    main()
