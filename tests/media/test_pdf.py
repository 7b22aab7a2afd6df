"""PDF intake: page counting and refusals, exact-size rendering, lazy iteration, and page-range parsing."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw

from tests.support.pdfs import encrypted
from vlserve.errors import ClientError, DocumentError, PayloadTooLargeError, UnsupportedMediaError
from vlserve.media import pdf
from vlserve.media.page_ranges import parse_page_range

pytestmark = pytest.mark.usefixtures("no_network")

# (width, height) in points: portrait with a red block, landscape, small square.
SIZES = [(300, 500), (600, 200), (100, 100)]
RED = (255, 0, 0)


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    """A 3-page PDF made by Pillow at 72 dpi, so each page is as many points as its image has pixels."""
    pages = [Image.new("RGB", size, "white") for size in SIZES]
    ImageDraw.Draw(pages[0]).rectangle((50, 100, 249, 399), fill=RED)
    pages[1].paste((0, 0, 255), (0, 0, 600, 200))
    path = tmp_path / "doc.pdf"
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return path


def close_to(pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 16) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def test_inspect_counts_pages(doc: Path) -> None:
    assert pdf.inspect_pdf(doc, max_pages=3) == 3


@pytest.mark.parametrize("index", range(len(SIZES)))
@pytest.mark.parametrize("longest_side", [64, 777, 1288])
def test_render_longest_side_is_exact_and_aspect_kept(doc: Path, index: int, longest_side: int) -> None:
    image = pdf.render_page(doc, index, longest_side=longest_side)
    width, height = SIZES[index]
    assert image.mode == "RGB"
    assert max(image.size) == longest_side
    if width >= height:
        assert image.width == longest_side
        assert abs(image.height - height * longest_side / width) <= 1
    else:
        assert image.height == longest_side
        assert abs(image.width - width * longest_side / height) <= 1


def test_render_keeps_colours_and_places_them(doc: Path) -> None:
    image = pdf.render_page(doc, 0, longest_side=1000)  # 300x500 pt -> 600x1000 px, red block at 100..498 x 200..798
    assert close_to(image.getpixel((300, 500)), RED)
    assert close_to(image.getpixel((20, 20)), (255, 255, 255))
    assert close_to(image.getpixel((550, 900)), (255, 255, 255))
    assert close_to(pdf.render_page(doc, 1, longest_side=300).getpixel((150, 50)), (0, 0, 255))


def test_render_applies_page_rotation(doc: Path, tmp_path: Path) -> None:
    document = pdfium.PdfDocument(doc)
    document[0].set_rotation(90)
    rotated = tmp_path / "rotated.pdf"
    document.save(rotated)
    document.close()
    image = pdf.render_page(rotated, 0, longest_side=1000)
    assert image.size == (1000, 600)
    assert close_to(image.getpixel((500, 300)), RED)
    assert close_to(image.getpixel((980, 580)), (255, 255, 255))


def test_iter_pages_renders_lazily(doc: Path) -> None:
    taken: list[int] = []

    def indices() -> Iterator[int]:
        for index in [2, 0, 1]:
            taken.append(index)
            yield index

    pages = pdf.iter_pages(doc, indices(), longest_side=50)
    assert taken == []
    index, image = next(pages)
    assert (index, max(image.size), taken) == (2, 50, [2])
    assert [i for i, _ in pages] == [0, 1]
    assert taken == [2, 0, 1]


def test_iter_pages_equals_render_page_and_releases_the_lock(doc: Path) -> None:
    pages = pdf.iter_pages(doc, [1, 0, 2, 1], longest_side=333)
    for index, image in pages:
        assert image.tobytes() == pdf.render_page(doc, index, longest_side=333).tobytes()
        # the lock is free between pages: another thread can render while this iterator waits
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(pdf.render_page, doc, 0, longest_side=20).result(timeout=30).size[1] == 20


def test_render_from_many_threads(doc: Path) -> None:
    jobs = [(i % 3, 100 + i) for i in range(24)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        images = list(pool.map(lambda job: pdf.render_page(doc, job[0], longest_side=job[1]), jobs))
    assert [max(image.size) for image in images] == [side for _, side in jobs]


@pytest.mark.parametrize("content", [b"hello, this is plain text\n", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, b""])
def test_not_a_pdf_is_415(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.pdf"
    path.write_bytes(content)
    with pytest.raises(UnsupportedMediaError, match="not a PDF") as caught:
        pdf.inspect_pdf(path, max_pages=10)
    assert (caught.value.status_code, caught.value.param) == (415, "file")


def corrupt_variants(doc: Path) -> dict[str, bytes]:
    data = doc.read_bytes()
    return {"truncated": data[: len(data) // 2], "garbage": b"%PDF-1.7\n" + bytes(range(256)) * 40}


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_corrupt_pdf_is_invalid_document(doc: Path, tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.pdf"
    path.write_bytes(corrupt_variants(doc)[kind])
    for attempt in (lambda: pdf.inspect_pdf(path, max_pages=10), lambda: pdf.render_page(path, 0, longest_side=64)):
        with pytest.raises(DocumentError, match="cannot be read") as caught:
            attempt()
        error = caught.value
        assert (error.status_code, error.code, error.param) == (400, "invalid_document", "file")
        assert str(tmp_path) not in error.message


def test_pdf_without_pages_is_invalid_document(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    empty = pdfium.PdfDocument.new()
    empty.save(path)
    empty.close()
    with pytest.raises(DocumentError, match="no pages") as caught:
        pdf.inspect_pdf(path, max_pages=10)
    assert caught.value.code == "invalid_document"


def test_encrypted_pdf_is_refused(doc: Path, tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(encrypted(doc.read_bytes()))
    with pytest.raises(DocumentError, match="encrypted") as caught:
        pdf.inspect_pdf(path, max_pages=10)
    assert (caught.value.status_code, caught.value.code, caught.value.param) == (400, "encrypted_document", "file")


def test_too_many_pages(doc: Path) -> None:
    with pytest.raises(PayloadTooLargeError, match="PDF has 3 pages, more than the limit of 2 pages") as caught:
        pdf.inspect_pdf(doc, max_pages=2)
    assert (caught.value.status_code, caught.value.code, caught.value.param) == (413, "too_many_pages", "file")


@pytest.mark.parametrize(
    ("spec", "total", "expected"),
    [
        (None, 4, [0, 1, 2, 3]),
        ("", 3, [0, 1, 2]),
        ("  ", 2, [0, 1]),
        ("1-5,8", 8, [0, 1, 2, 3, 4, 7]),
        (" 8 , 1 - 2 ", 8, [0, 1, 7]),
        ("3-", 5, [2, 3, 4]),
        ("-2", 5, [0, 1]),
        ("4-4", 5, [3]),
        ("1-3,2-4,3", 5, [0, 1, 2, 3]),
        ("007", 8, [6]),
    ],
)
def test_page_range_good(spec: str | None, total: int, expected: list[int]) -> None:
    assert parse_page_range(spec, total) == expected


@pytest.mark.parametrize(
    ("spec", "total", "message"),
    [
        ("9", 8, "page 9 is out of range: the document has 8 pages"),
        ("2-9", 8, "page 9 is out of range: the document has 8 pages"),
        ("2", 1, "page 2 is out of range: the document has 1 page"),
        ("5-2", 8, "'5-2' is not a valid range (start after end)"),
        ("abc", 8, "'abc' is not a page number or range"),
        ("1,x-3", 8, "'x-3' is not a page number or range"),
        ("-", 8, "'-' is not a page number or range"),
        ("1-2-3", 8, "'1-2-3' is not a page number or range"),
        ("2.5", 8, "'2.5' is not a page number or range"),
        ("\u00b2", 8, "'\u00b2' is not a page number or range"),
        ("0", 8, "page 0 does not exist: pages are numbered from 1"),
        ("0-3", 8, "page 0 does not exist: pages are numbered from 1"),
        ("1,,2", 8, "page list has an empty item"),
        ("1,", 8, "page list has an empty item"),
    ],
)
def test_page_range_bad(spec: str, total: int, message: str) -> None:
    with pytest.raises(ClientError) as caught:
        parse_page_range(spec, total)
    assert caught.value.message.startswith(message)
    assert (caught.value.status_code, caught.value.param) == (400, "pages")
