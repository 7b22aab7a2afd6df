"""Malformed images, fuzzed (hypothesis): the decoder answers a client error or an image, nothing else.

Seeds are small valid PNG, JPEG (baseline and progressive), GIF (animated too), WebP, TIFF and BMP files;
each example truncates, flips, inserts or overwrites bytes, or rewrites the header to claim a huge size,
then goes through the public entry points (``read_size``, ``decode_image`` with and without a pixel
target, and the base64 data-URL path). Every outcome must be a decoded image within the limits or a
:class:`ClientError` (ImageError, PayloadTooLargeError …): never another exception, never a hang
(each example has a deadline, generous against a slow machine, far below what a decompression bomb costs).
"""

from __future__ import annotations

import base64
import io
import struct
import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlserve.errors import ClientError
from vlserve.media.data_url import decode_data_url
from vlserve.media.images import decode_image, read_size
from vlserve.media.limits import ImageLimits

pytestmark = pytest.mark.usefixtures("no_network")

LIMITS = ImageLimits(max_bytes=256 * 1024, max_pixels=4_000_000)
FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _picture(size: tuple[int, int] = (37, 23), mode: str = "RGB") -> Image.Image:
    width, height = size
    pixels = [((x * 7) % 256, (y * 11) % 256, (x * y) % 256, 200) for y in range(height) for x in range(width)]
    image = Image.new(mode, size)
    image.putdata([pixel[: len(mode)] for pixel in pixels])
    return image


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _animated_gif() -> bytes:
    frames = [_picture((16, 12)).rotate(angle) for angle in (0, 90, 180)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    return out.getvalue()


SEEDS: dict[str, bytes] = {
    "png": _encode(_picture(), "PNG"),
    "png-rgba": _encode(_picture(mode="RGBA"), "PNG"),
    "jpeg": _encode(_picture(), "JPEG", quality=80),
    "jpeg-progressive": _encode(_picture((64, 48)), "JPEG", progressive=True),
    "gif": _encode(_picture(), "GIF"),
    "gif-animated": _animated_gif(),
    "webp": _encode(_picture(), "WEBP", quality=70),
    "webp-lossless": _encode(_picture(), "WEBP", lossless=True),
    "tiff": _encode(_picture(), "TIFF"),
    "tiff-deflate": _encode(_picture(), "TIFF", compression="tiff_adobe_deflate"),
    "bmp": _encode(_picture(), "BMP"),
}


def claim_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its header rewritten to claim ``width`` x ``height`` (where the format has one place)."""
    out = bytearray(data)
    if out.startswith(b"\x89PNG"):
        out[16:24] = struct.pack(">II", width, height)  # IHDR (its CRC is now wrong, as an attacker's would be)
    elif out.startswith(b"GIF8"):
        out[6:10] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    elif out.startswith(b"BM"):
        out[18:26] = struct.pack("<ii", min(width, 2**31 - 1), min(height, 2**31 - 1))
    elif out.startswith(b"\xff\xd8"):
        sof = max(out.find(b"\xff\xc0"), out.find(b"\xff\xc2"))
        if sof > 0:
            out[sof + 5 : sof + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    return bytes(out)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite", "claim", "duplicate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 512))]
        else:
            side = st.integers(1, 2**31 - 1) | st.sampled_from([6000, 65535, 50_000, 2**31 - 1])
            data = bytearray(claim_size(bytes(data), draw(side), draw(side)))
    return bytes(data)


def assert_decoded_or_refused(call) -> None:
    try:
        result = call()
    except ClientError as exc:
        assert 400 <= exc.status_code < 500
        assert exc.message and exc.param == "image"
        return
    size = result if isinstance(result, tuple) else result.image.size
    assert size[0] * size[1] <= LIMITS.max_pixels


@FUZZ
@given(data=mutated())
def test_a_mutated_image_is_decoded_or_refused_with_a_client_error(data: bytes) -> None:
    assert_decoded_or_refused(lambda: read_size(data, LIMITS, param="image"))
    assert_decoded_or_refused(lambda: decode_image(data, LIMITS, param="image"))
    assert_decoded_or_refused(lambda: decode_image(data, LIMITS, param="image", target_pixels=32 * 32))


@FUZZ
@given(data=mutated(), mime=st.sampled_from(["image/png", "image/jpeg", "", "application/octet-stream"]))
def test_a_mutated_image_in_a_data_url_is_decoded_or_refused(data: bytes, mime: str) -> None:
    url = f"data:{mime};base64,{base64.b64encode(data).decode()}"

    def through_the_url():
        return decode_image(decode_data_url(url, max_bytes=LIMITS.max_bytes, param="image"), LIMITS, param="image")

    assert_decoded_or_refused(through_the_url)


@FUZZ
@given(url=st.one_of(st.text(max_size=300).map(lambda t: "data:" + t), st.text(max_size=300)))
def test_a_malformed_data_url_is_a_client_error(url: str) -> None:
    assert_decoded_or_refused(
        lambda: decode_image(decode_data_url(url, max_bytes=LIMITS.max_bytes, param="image"), LIMITS, param="image")
    )


@pytest.mark.parametrize("seed", ["png", "gif", "bmp", "jpeg", "jpeg-progressive"])
@pytest.mark.parametrize(("width", "height"), [(6000, 6000), (65535, 65535), (60_000, 100)])
def test_a_header_claiming_a_huge_size_is_refused_at_once(seed: str, width: int, height: int) -> None:
    data = claim_size(SEEDS[seed], width, height)
    started = time.monotonic()
    with pytest.raises(ClientError):
        decode_image(data, LIMITS, param="image")
    assert time.monotonic() - started < 2  # from the header: nothing of that size is allocated


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_decodes(name: str) -> None:
    """The fuzzing starts from images the decoder reads: a refusal of a mutant is the mutation's doing."""
    loaded = decode_image(SEEDS[name], LIMITS, param="image")
    assert loaded.image.mode == "RGB" and loaded.image.size[0] > 0
