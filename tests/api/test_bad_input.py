"""Every bad input gets a clean 4xx in the OpenAI error envelope naming the problem; the server keeps serving."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from tests.api.fakes import FakeEngine
from tests.support.images import chart, data_url, encode


@pytest.fixture
def api(make_client, image_host):
    client = make_client(
        FakeEngine(max_model_len=60),
        max_image_bytes=64 * 1024,
        max_image_pixels=1_000_000,
        max_images_per_request=3,
        url_allowlist=["127.0.0.1/32"],
        url_fetch_timeout=0.5,
    )
    yield client
    ok = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "still there?"}]})
    assert ok.status_code == 200, "the server must keep serving after a bad request"


def ask(api, *parts, **extra):
    content = [*parts, {"type": "text", "text": "what is this"}]
    return api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}], **extra})


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def assert_error(response, status: int, *, code: str | None = None, param: str | None = None, says: str = ""):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status not in (404, 429) else error["type"])
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    assert says.lower() in error["message"].lower()
    return error


def png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose header claims another size: a decompression bomb's header."""
    data = bytearray(encode(Image.new("RGB", (8, 8), "white")))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_malformed_json(api):
    r = api.post("/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"})
    assert_error(r, 400, code="invalid_json", says="not valid JSON")


def test_missing_messages(api):
    assert_error(api.post("/v1/chat/completions", json={"model": "fake-vl"}), 400, param="messages", says="required")


def test_empty_messages(api):
    r = api.post("/v1/chat/completions", json={"messages": []})
    assert_error(r, 400, param="messages", says="at least one message")


def test_unknown_model(api):
    r = api.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
    error = assert_error(r, 404, code="model_not_found", param="model", says="gpt-9")
    assert "fake-vl" in error["message"]


def test_invalid_base64(api):
    r = ask(api, image("data:image/png;base64,@@@not-base64@@@"))
    assert_error(r, 400, code="invalid_base64", param="messages[0].content[0].image_url", says="base64")


def test_bytes_that_are_not_an_image(api):
    r = ask(api, image(data_url(b"%PDF-1.7 this is not an image at all", "image/png")))
    assert_error(r, 400, code="invalid_image", param="messages[0].content[0].image_url", says="not a recognised image")


def test_truncated_image(api):
    whole = encode(chart(1, (200, 150)))
    r = ask(api, image(data_url(whole[: len(whole) // 2])))
    assert_error(r, 400, code="truncated_image", param="messages[0].content[0].image_url")


def test_image_over_the_byte_limit(api):
    noisy = io.BytesIO()
    Image.effect_noise((300, 300), 100).convert("RGB").save(noisy, "PNG")
    assert len(noisy.getvalue()) > 64 * 1024
    r = ask(api, image(data_url(noisy.getvalue())))
    assert_error(r, 413, param="messages[0].content[0].image_url", says="VLSERVE_MAX_IMAGE_BYTES")


def test_image_over_the_pixel_limit_is_refused_from_the_header(api):
    r = ask(api, image(data_url(png_claiming(30000, 30000))))
    assert_error(r, 400, code="image_too_large", param="messages[0].content[0].image_url", says="pixels")


def test_more_images_than_allowed(api):
    url = data_url(encode(chart(2, (40, 40))))
    r = ask(api, *(image(url) for _ in range(4)))
    assert_error(r, 400, code="too_many_images", param="messages", says="at most 3")


def test_prompt_longer_than_the_context(api):
    r = api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "word " * 100}]})
    assert_error(r, 400, code="context_length_exceeded", param="messages", says="context")


def test_max_tokens_beyond_the_context(api):
    r = api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 500})
    assert_error(r, 400, code="context_length_exceeded", param="max_tokens", says="at most")


def test_unknown_content_part_type(api):
    r = ask(api, {"type": "input_audio", "input_audio": {"data": "..."}})
    assert_error(r, 400, code="unsupported_content_type", param="messages[0].content[0].type", says="input_audio")


def test_url_that_fails(api, image_host):
    r = ask(api, image(f"{image_host.url}/404"))
    assert_error(r, 400, code="media_fetch_failed", param="messages[0].content[0].image_url", says="404")


def test_url_that_times_out(api, image_host):
    r = ask(api, image(f"{image_host.url}/slow"))
    assert_error(r, 400, code="media_fetch_timeout", param="messages[0].content[0].image_url", says="timed out")


def test_refused_url(api, image_host):
    port = image_host.url.rsplit(":", 1)[1]
    before = len(image_host.paths())
    r = ask(api, image(f"http://127.0.0.2:{port}/ok.png"))
    assert_error(r, 403, code="url_refused", param="messages[0].content[0].image_url", says="VLSERVE_URL_ALLOWLIST")
    assert len(image_host.paths()) == before  # refused before any connection


def test_unsupported_url_scheme(api):
    r = ask(api, image("file:///etc/passwd"))
    assert_error(r, 400, code="unsupported_url_scheme", param="messages[0].content[0].image_url")


def test_n_greater_than_one(api):
    r = api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert_error(r, 400, param="n", says="n > 1")


def test_wrong_type_names_the_field(api):
    r = api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})
    assert_error(r, 400, param="temperature")


def test_unknown_route_is_404_in_the_envelope(api):
    assert_error(api.get("/v1/nothing"), 404, says="no route")


def test_vision_without_image(api):
    r = api.post("/v1/chat/vision", data={"prompt": "hi"})
    assert_error(r, 400, param="image_file", says="required")


def test_vision_upload_that_is_not_an_image(api):
    r = api.post("/v1/chat/vision", data={"prompt": "hi"}, files=[("image_file", ("x.png", b"hello", "image/png"))])
    assert_error(r, 400, code="invalid_image", param="image_file[0]")


def test_a_message_names_what_its_role_needs(api):
    r = api.post("/v1/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]})
    assert_error(r, 400, param="messages[0].role", says="one of system, developer, user, assistant, tool")
    r = api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": None}]})
    assert_error(r, 400, param="messages[0].content", says="no content")
