"""decode_data_url: base64 image data URLs, strictly validated, size-checked before decoding."""

from __future__ import annotations

import base64

import pytest

from vlserve.errors import ClientError, PayloadTooLargeError
from vlserve.media import decode_data_url

PARAM = "messages[0].content[0].image_url"
DATA = bytes(range(256)) * 4  # 1 KiB; contains bytes that encode to '+' and '/' (or '-' and '_')


def url(payload: str, header: str = "image/png;base64") -> str:
    return f"data:{header},{payload}"


def test_base64_image_data_url_decodes() -> None:
    assert decode_data_url(url(base64.b64encode(DATA).decode()), max_bytes=4096, param=PARAM) == DATA


def test_whitespace_newlines_urlsafe_alphabet_and_missing_padding_are_accepted() -> None:
    text = base64.urlsafe_b64encode(DATA[:100]).decode().rstrip("=")
    wrapped = "\n".join(text[i : i + 20] for i in range(0, len(text), 20))
    assert "-" in text or "_" in text
    assert decode_data_url(url(f"  {wrapped}\r\n"), max_bytes=4096, param=PARAM) == DATA[:100]


@pytest.mark.parametrize("payload", ["not*base64!", "QUJD=RA==", "ab\x00cd", "abcde", "é=="])
def test_invalid_base64_is_a_400_with_code_invalid_base64(payload: str) -> None:
    with pytest.raises(ClientError) as info:
        decode_data_url(url(payload), max_bytes=4096, param=PARAM)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "invalid_base64", PARAM)
    assert "base64" in info.value.message


def test_size_is_checked_from_the_length_before_decoding() -> None:
    # 8 MB of characters that are not even valid base64: the size check must fire first.
    with pytest.raises(PayloadTooLargeError) as info:
        decode_data_url(url("!" * 8_000_000), max_bytes=1024 * 1024, param=PARAM)
    assert (info.value.status_code, info.value.param) == (413, PARAM)
    assert "1 MB" in info.value.message


def test_decoded_size_just_over_the_limit_is_413() -> None:
    encoded = base64.b64encode(b"\1" * 3001).decode()
    with pytest.raises(PayloadTooLargeError):
        decode_data_url(url(encoded), max_bytes=3000, param=PARAM)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("data:image/png;base64", "','"),
        (url("iVBORw0KGgo=", header="image/png"), "base64"),
        (url("aGVsbG8=", header="text/plain;base64"), "'text/plain' is not an image"),
        (url("", header="image/png;base64"), "no data"),
        ("https://example.com/a.png", "'data:'"),
    ],
)
def test_malformed_data_url_names_the_problem(value: str, problem: str) -> None:
    with pytest.raises(ClientError) as info:
        decode_data_url(value, max_bytes=4096, param=PARAM)
    assert (info.value.status_code, info.value.code, info.value.param) == (400, "invalid_data_url", PARAM)
    assert problem in info.value.message
