"""load_image: what a client sees for good, odd, hostile and broken image bytes."""

from __future__ import annotations

import io
import time
import warnings
import zlib

import pytest
from PIL import Image, ImageFile

from vlserve.errors import ImageError, PayloadTooLargeError
from vlserve.media import ImageLimits, load_image
from vlserve.media.images import decode_image

PARAM = "messages[0].content[1].image_url"
LIMITS = ImageLimits(max_bytes=5 * 1024 * 1024, max_pixels=40_000_000)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR (and its CRC) is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def noise_png(size: int = 128) -> bytes:
    return encode(Image.frombytes("RGB", (size, size), bytes(range(256)) * (size * size * 3 // 256)), "PNG")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode_to_rgb(fmt: str) -> None:
    image = load_image(encode(Image.new("RGB", (30, 20), (10, 120, 240)), fmt), LIMITS, param=PARAM)
    assert image.mode == "RGB"
    assert image.size == (30, 20)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_alpha_is_composited_onto_white(fmt: str) -> None:
    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 0))  # fully transparent red ...
    rgba.putpixel((0, 0), (0, 0, 255, 255))  # ... except one opaque blue pixel
    image = load_image(encode(rgba, fmt, lossless=True), LIMITS, param=PARAM)
    assert image.mode == "RGB"
    assert image.getpixel((3, 1)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 255)


def test_gif_palette_transparency_becomes_white() -> None:
    palette_image = Image.new("P", (4, 4), 1)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    palette_image.putpixel((0, 0), 0)
    data = encode(palette_image, "GIF", transparency=1)
    image = load_image(data, LIMITS, param=PARAM)
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 0)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (6, 6), (255, 0, 0)), Image.new("RGB", (6, 6), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert load_image(data, LIMITS, param=PARAM).getpixel((3, 3)) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encode(Image.new("RGB", (40, 20), (0, 200, 0)), "JPEG", exif=exif.tobytes())
    image = load_image(data, LIMITS, param=PARAM)
    assert image.size == (20, 40)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    grey = Image.new("I;16", (4, 4), 32896)  # mid-grey in 16 bits
    grey.putpixel((0, 0), 65535)
    image = load_image(encode(grey, "PNG"), LIMITS, param=PARAM)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((2, 2)) == (128, 128, 128)


@pytest.mark.parametrize("mode", ["CMYK", "L", "1", "LA", "P"])
def test_other_modes_become_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = load_image(encode(Image.new(mode, (5, 5)), fmt), LIMITS, param=PARAM)
    assert image.mode == "RGB"
    assert image.size == (5, 5)


def test_more_bytes_than_the_limit_is_413_naming_the_limit_in_mb() -> None:
    data = encode(Image.new("RGB", (600, 600)), "BMP")  # ~1.03 MiB
    with pytest.raises(PayloadTooLargeError) as info:
        load_image(data, ImageLimits(max_bytes=1024 * 1024, max_pixels=10**6), param=PARAM)
    assert info.value.status_code == 413
    assert info.value.param == PARAM
    assert "1 MB" in info.value.message


def test_bytes_that_are_not_an_image_are_refused() -> None:
    with pytest.raises(ImageError) as info:
        load_image(b"%PDF-1.7 definitely not an image", LIMITS, param=PARAM)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "invalid_image", PARAM)
    assert "not a recognised image format (PNG, JPEG" in info.value.message


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(ImageError) as info:
        load_image(b"", LIMITS, param=PARAM)
    assert info.value.status_code == 400
    assert "empty" in info.value.message


def test_zero_size_image_is_refused() -> None:
    with pytest.raises(ImageError) as info:
        load_image(png_claiming(0, 10), LIMITS, param=PARAM)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "invalid_image", PARAM)
    assert "header is invalid" in info.value.message


def test_too_many_pixels_is_refused_with_the_limit() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError) as info:
        load_image(data, ImageLimits(max_bytes=10**6, max_pixels=5_000), param=PARAM)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "image_too_large", PARAM)
    assert "100x100" in info.value.message
    assert "5000" in info.value.message


@pytest.mark.parametrize(
    ("width", "height", "max_pixels"),
    [
        (10_000, 10_000, 40_000_000),  # over our limit; in PIL's warning range (89M..179M pixels)
        (50_000, 50_000, 40_000_000),  # PIL itself would raise DecompressionBombError
        (50_000, 50_000, 10**10),  # our limit is generous: PIL's error must still be a clean 400
    ],
)
def test_decompression_bomb_header_is_refused_fast_without_warnings(width: int, height: int, max_pixels: int) -> None:
    data = png_claiming(width, height)
    assert len(data) < 100
    before = Image.MAX_IMAGE_PIXELS
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ImageError) as info:
        warnings.simplefilter("always")
        load_image(data, ImageLimits(max_bytes=10**6, max_pixels=max_pixels), param=PARAM)
    assert time.perf_counter() - started < 0.5
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "image_too_large", PARAM)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert before == Image.MAX_IMAGE_PIXELS


def test_truncated_image_is_refused_as_truncated() -> None:
    data = noise_png()
    with pytest.raises(ImageError) as info:
        load_image(data[: len(data) // 2], LIMITS, param=PARAM)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "truncated_image", PARAM)
    assert "truncated" in info.value.message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_the_encoded_bytes_are_kept_only_when_they_are_exactly_the_decoded_image():
    plain = encode(Image.new("RGB", (30, 20), (10, 120, 240)), "PNG")
    kept = decode_image(plain, LIMITS, param=PARAM)
    assert (kept.source, kept.source_type) == (plain, "image/png")
    jpeg = decode_image(encode(Image.new("RGB", (8, 8)), "JPEG"), LIMITS, param=PARAM)
    assert jpeg.source_type == "image/jpeg"
    converted = [
        encode(Image.new("RGBA", (8, 8), (1, 2, 3, 100)), "PNG"),  # transparency composited onto white
        encode(Image.new("L", (8, 8)), "PNG"),  # greyscale made RGB
        encode(Image.new("RGB", (8, 8)), "BMP"),  # a format not every engine reads
    ]
    for data in converted:
        assert decode_image(data, LIMITS, param=PARAM).source is None
    rotated = Image.new("RGB", (8, 4))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90°: the decoded image is not what the bytes hold
    data = io.BytesIO()
    rotated.save(data, "JPEG", exif=exif)
    turned = decode_image(data.getvalue(), LIMITS, param=PARAM)
    assert turned.image.size == (4, 8) and turned.source is None
