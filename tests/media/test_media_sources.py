"""load_image_url: data: and http(s) image URLs to RGB images; every other scheme refused."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from PIL import Image

from vlserve.errors import ClientError, ImageError, PayloadTooLargeError
from vlserve.media import ImageFetcher, ImageLimits, load_image_url

PARAM = "messages[0].content[2].image_url"
LIMITS = ImageLimits(max_bytes=1024 * 1024, max_pixels=1_000_000)


def load(url: str, limits: ImageLimits = LIMITS) -> Image.Image:
    async def run() -> Image.Image:
        fetcher = ImageFetcher(timeout=2.0, max_redirects=2, max_bytes=limits.max_bytes, allowlist=["127.0.0.1"])
        async with fetcher:
            return (await load_image_url(url, fetcher=fetcher, limits=limits, param=PARAM)).image

    return asyncio.run(run())


def test_data_url_becomes_an_rgb_image(ok_png: bytes) -> None:
    image = load("data:image/png;base64," + base64.b64encode(ok_png).decode())
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (8, 6), (200, 30, 30))


def test_http_url_is_fetched_and_decoded(server: tuple[str, Any]) -> None:
    base, _ = server
    image = load(f"{base}/redirect-ok")
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (8, 6), (200, 30, 30))


def test_data_url_with_bytes_that_are_not_an_image_is_an_image_error() -> None:
    with pytest.raises(ImageError) as info:
        load("data:image/png;base64," + base64.b64encode(b"hello, not a png").decode())
    assert (info.value.status_code, info.value.param) == (400, PARAM)


def test_data_url_over_the_byte_limit_is_413(ok_png: bytes) -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        load("data:image/png;base64," + base64.b64encode(ok_png).decode(), ImageLimits(16, 1000))
    assert (info.value.status_code, info.value.param) == (413, PARAM)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("file:///etc/passwd", "'file'"),
        ("ftp://127.0.0.1/a.png", "'ftp'"),
        ("gopher://127.0.0.1:70/_", "'gopher'"),
        ("iVBORw0KGgoAAAANSUhEUg", "(none)"),
    ],
)
def test_other_schemes_are_refused_naming_the_allowed_ones(url: str, shown: str) -> None:
    with pytest.raises(ClientError) as info:
        load(url)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "unsupported_url_scheme", PARAM)
    assert shown in info.value.message
    assert "data:, http:// or https://" in info.value.message
