"""Images checked from their headers against the request's pixel budget, then decoded straight to the size
the model needs: a JPEG through DCT scaling, any image reduced by a whole factor, never below the budget."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from PIL import Image

from tests.media.test_media_images import png_claiming
from tests.support.images import chart, encode
from vlserve.errors import ImageError
from vlserve.media import ImageFetcher, ImageLimits, MediaLoader
from vlserve.media.images import decode_image, read_size
from vlserve.media.resize import DEFAULT_MAX_PIXELS, ImageBudget
from vlserve.media.sources import EncodedImage

LIMITS = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)


def decode_all(images: list[bytes], *, max_request_pixels: int, target: int | None = DEFAULT_MAX_PIXELS):
    async def main():
        async with ImageFetcher(timeout=1, max_redirects=0, max_bytes=LIMITS.max_bytes, allowlist=[]) as fetcher:
            encoded = [EncodedImage(data, f"messages[0].content[{i}].image_url") for i, data in enumerate(images)]
            return await MediaLoader(fetcher, LIMITS).decode(
                encoded, max_request_pixels=max_request_pixels, target_pixels=target
            )

    return asyncio.run(main())


def test_eight_images_claiming_6000x6000_are_refused_from_their_headers_at_once():
    images = [png_claiming(6000, 6000)] * 8  # a few hundred bytes, 288 M pixels together
    started = time.perf_counter()
    with pytest.raises(ImageError) as info:
        decode_all(images, max_request_pixels=100_000_000)
    assert time.perf_counter() - started < 1
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "image_too_large", "messages")
    assert "288000000 pixels" in info.value.message and "VLSERVE_MAX_REQUEST_PIXELS" in info.value.message


def test_the_header_is_read_without_decoding():
    assert read_size(png_claiming(6000, 4000), LIMITS, param="x") == (6000, 4000)


def test_a_large_jpeg_is_decoded_at_a_dct_scale_still_above_the_budget():
    data = encode(chart(1, (4000, 3000)), "JPEG")
    loaded = decode_image(data, LIMITS, param="x", target_pixels=DEFAULT_MAX_PIXELS)
    width, height = loaded.image.size
    assert (width, height) == (2000, 1500)  # 1/2 scale: 3 M pixels; 1/4 would be below 1.3 M
    assert width * height >= DEFAULT_MAX_PIXELS
    assert loaded.image.mode == "RGB" and loaded.source is None  # not the client's bytes any more


def test_a_large_jpeg_turned_by_its_exif_is_decoded_at_a_dct_scale_upright():
    stored = chart(4, (4000, 3000))
    stored.paste((255, 0, 0), (0, 0, 400, 300))  # a red corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = 8  # displayed turned 90 degrees anticlockwise: the corner ends bottom left
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif.tobytes())
    data = buffer.getvalue()
    loaded = decode_image(data, LIMITS, param="x", target_pixels=DEFAULT_MAX_PIXELS)
    assert loaded.image.size == (1500, 2000)  # 1/2 scale, then upright
    fitted = ImageBudget(64 * 1024, DEFAULT_MAX_PIXELS).fit(loaded.image)
    assert fitted.size == ImageBudget(64 * 1024, DEFAULT_MAX_PIXELS).size_for(3000, 4000)
    red, green, _ = fitted.getpixel((10, fitted.height - 10))
    assert red > 200 and green < 60


def test_a_large_png_is_reduced_by_a_whole_factor_still_above_the_budget():
    data = encode(chart(2, (3000, 2400)), "PNG")
    loaded = decode_image(data, LIMITS, param="x", target_pixels=DEFAULT_MAX_PIXELS)
    assert loaded.image.size == (1500, 1200)
    assert loaded.source is None


def test_an_image_within_the_budget_is_decoded_as_it_is():
    data = encode(chart(3, (800, 600)), "JPEG")
    loaded = decode_image(data, LIMITS, param="x", target_pixels=DEFAULT_MAX_PIXELS)
    assert loaded.image.size == (800, 600) and loaded.source == data


def test_a_request_within_its_budget_is_decoded_in_order():
    small = [encode(Image.new("RGB", (40 + i, 30)), "PNG") for i in range(3)]
    loaded = decode_all(small, max_request_pixels=10_000)
    assert [image.image.size for image in loaded] == [(40, 30), (41, 30), (42, 30)]
