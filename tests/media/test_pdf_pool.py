"""PDF pages rendered by worker processes: order, sizes, identical pixels, a bounded window, clean stops."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.support.pdfs import encrypted
from vlserve.errors import DocumentError, ServerError
from vlserve.media import pdf

pytestmark = pytest.mark.usefixtures("no_network_but_unix_sockets")


# (width, height) in points: portrait, landscape, square, and a tall strip.
SIZES = [(300, 500), (600, 200), (100, 100), (120, 700)]


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    """A 4-page PDF with shapes, text and colours on every page, so that a wrong page or pixel shows."""
    pages = []
    for number, size in enumerate(SIZES):
        page = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(page)
        draw.rectangle((5, 5, size[0] // 2, size[1] // 3), fill=(40 * number, 200, 255 - 40 * number))
        draw.line((0, size[1] - 1, size[0] - 1, 0), fill="black", width=3)
        draw.text((10, size[1] // 2), f"page {number + 1}", fill="black")
        pages.append(page)
    path = tmp_path / "doc.pdf"
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return path


def workers_alive() -> set[multiprocessing.process.BaseProcess]:
    return set(multiprocessing.active_children())


def test_pages_come_in_the_order_asked_with_exact_sizes(doc: Path) -> None:
    order = [3, 0, 2, 2, 1, 0]
    pages = list(pdf.iter_pages(doc, order, longest_side=500, workers=2))
    assert [index for index, _ in pages] == order
    for index, image in pages:
        width, height = SIZES[index]
        assert image.mode == "RGB"
        assert max(image.size) == 500
        assert image.size == pdf._fit((width, height), 500, index)


@pytest.mark.parametrize("longest_side", [97, 1288])
@pytest.mark.parametrize(("workers", "window"), [(2, None), (3, 1), (2, 5)])
def test_pool_pixels_equal_single_process_rendering(
    doc: Path, longest_side: int, workers: int, window: int | None
) -> None:
    expected = [pdf.render_page(doc, index, longest_side=longest_side) for index in range(len(SIZES))]
    pooled = pdf.iter_pages(doc, range(len(SIZES)), longest_side=longest_side, workers=workers, window=window)
    for (index, image), single in zip(pooled, expected, strict=True):
        assert (image.size, image.mode) == (single.size, single.mode), index
        assert image.tobytes() == single.tobytes(), f"page {index} differs from render_page"


@pytest.mark.parametrize("window", [1, 3])
def test_at_most_window_pages_ahead_of_the_caller(doc: Path, window: int) -> None:
    """Pages are asked for (taken from ``indices``) only while fewer than ``window`` are not handed over."""
    taken = [0]

    def indices() -> Iterator[int]:
        for number in range(24):
            taken[0] += 1
            yield number % len(SIZES)

    ahead = []
    for handed, _ in enumerate(pdf.iter_pages(doc, indices(), longest_side=200, workers=2, window=window), 1):
        ahead.append(taken[0] - handed)
    assert len(ahead) == 24
    assert max(ahead) <= window
    assert max(ahead) == window - 1  # it does render ahead, up to the window (one slot was just freed)


def test_closing_the_iterator_stops_the_workers(doc: Path) -> None:
    before = workers_alive()
    pages = pdf.iter_pages(doc, [0, 1, 2, 3] * 10, longest_side=300, workers=2)
    next(pages)
    started = workers_alive() - before
    assert len(started) == 2
    assert all(process.is_alive() for process in started)
    pages.close()
    assert not any(process.is_alive() for process in started)
    assert workers_alive() - before == set()


def test_dropping_the_iterator_stops_the_workers(doc: Path) -> None:
    before = workers_alive()
    for index, _ in pdf.iter_pages(doc, [0, 1, 2, 3] * 10, longest_side=300, workers=2):
        if index == 2:
            break  # the generator is collected here and closed
    assert workers_alive() - before == set()


def test_shared_memory_is_released(doc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names: list[str] = []

    class Recorded(pdf.SharedMemory):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            names.append(self.name)

    monkeypatch.setattr(pdf, "SharedMemory", Recorded)
    pages = pdf.iter_pages(doc, [0, 1, 2], longest_side=100, workers=2)
    next(pages)
    assert names and Path("/dev/shm", names[0]).exists()
    pages.close()
    list(pdf.iter_pages(doc, [0, 1, 2], longest_side=100, workers=2))
    assert len(names) == 2
    assert not any(Path("/dev/shm", name).exists() for name in names)


def test_a_killed_worker_is_a_server_error_not_a_hang(doc: Path) -> None:
    before = workers_alive()
    pages = pdf.iter_pages(doc, [0, 1, 2, 3] * 50, longest_side=1288, workers=2)
    next(pages)
    for process in workers_alive() - before:
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(ServerError, match="renderer stopped"):
        for _ in pages:
            pass
    assert workers_alive() - before == set()


def test_a_page_outside_the_document_fails_at_its_turn(doc: Path) -> None:
    pages = pdf.iter_pages(doc, [1, 9, 0], longest_side=64, workers=2)
    assert next(pages)[0] == 1
    with pytest.raises(IndexError, match="page index 9 is outside a document of 4 pages"):
        next(pages)


def test_encrypted_pdf_gives_the_same_error_as_one_process(doc: Path, tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(encrypted(doc.read_bytes()))
    with pytest.raises(DocumentError) as single:
        next(pdf.iter_pages(path, [0], longest_side=64))
    before = workers_alive()
    with pytest.raises(DocumentError) as pooled:
        next(pdf.iter_pages(path, [0], longest_side=64, workers=2))
    assert (pooled.value.code, pooled.value.message) == (single.value.code, single.value.message)
    assert pooled.value.code == "encrypted_document"
    assert workers_alive() - before == set()  # refused before any worker starts


@pytest.mark.parametrize("content", [b"%PDF-1.7\n" + bytes(range(256)) * 40, b"%PDF-1.4\n1 0 obj\n<<"])
def test_corrupt_pdf_gives_the_same_error_as_one_process(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(content)
    with pytest.raises(DocumentError) as single:
        next(pdf.iter_pages(path, [0], longest_side=64))
    with pytest.raises(DocumentError) as pooled:
        next(pdf.iter_pages(path, [0], longest_side=64, workers=2))
    assert (pooled.value.code, pooled.value.message, pooled.value.param) == (
        single.value.code,
        single.value.message,
        single.value.param,
    )
    assert pooled.value.code == "invalid_document"
    assert str(tmp_path) not in pooled.value.message


def test_bad_arguments(doc: Path) -> None:
    with pytest.raises(ValueError, match="window"):
        next(pdf.iter_pages(doc, [0], longest_side=64, workers=2, window=0))
    with pytest.raises(ValueError, match="longest_side"):
        next(pdf.iter_pages(doc, [0], longest_side=0, workers=2))
