"""Request limits that cost nothing to enforce: body size, form fields, JSON depth, messages, text, pixels,
and admission before any work. Each is a clean 4xx (or 429) naming the setting; the server keeps serving."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.fakes import FakeEngine
from tests.api.test_bad_input import assert_error
from tests.media.test_media_images import png_claiming
from tests.support.images import chart, data_url, encode, solid
from vlserve.api.body_limit import BodyLimitMiddleware, PartCounter
from vlserve.settings import Settings

KIB = 1024


class CountingEngine(FakeEngine):
    """Counts the prompts it built: a request refused before any work builds none."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prepared = 0

    async def prepare(self, request):
        self.prepared += 1
        return await super().prepare(request)


@pytest.fixture
def engine() -> CountingEngine:
    return CountingEngine(max_model_len=400)


@pytest.fixture
def api(make_client, engine):
    client = make_client(
        engine, max_body_bytes=64 * KIB, max_messages=4, max_prompt_chars=2000, max_json_depth=6,
        max_form_fields=5, max_request_pixels=40_000_000, document_max_bytes=32 * KIB,
    )  # fmt: skip
    yield client
    ok = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "still there?"}]})
    assert ok.status_code == 200, "the server must keep serving after a refused request"


def chat(content, **extra) -> dict:
    return {"messages": [{"role": "user", "content": content}], **extra}


def test_a_body_declared_over_the_limit_is_413_naming_the_setting(api, engine):
    r = api.post("/v1/chat/completions", json=chat("x" * 70 * KIB))
    assert_error(r, 413, code="payload_too_large", says="VLSERVE_MAX_BODY_BYTES")
    assert r.headers["connection"] == "close"
    assert engine.prepared == 0


def test_a_chunked_body_is_refused_once_it_passes_the_limit(api):
    def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * KIB
        yield b'"}]}'

    r = api.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, code="payload_too_large", says="VLSERVE_MAX_BODY_BYTES")


def test_a_document_upload_over_its_limit_names_the_document_setting(api):
    r = api.post("/v1/documents", files=[("file", ("page.png", b"\x89PNG" + b"0" * 40 * KIB, "image/png"))])
    assert_error(r, 413, code="payload_too_large", param="file[0]", says="VLSERVE_DOCUMENT_MAX_BYTES")


def test_a_form_with_too_many_fields_is_refused_naming_the_setting(api):
    files = [("file", (f"p{i}.png", solid((8, 8)), "image/png")) for i in range(8)]
    r = api.post("/v1/documents", files=files)
    assert_error(r, 413, code="too_many_form_fields", says="VLSERVE_MAX_FORM_FIELDS")


def test_too_many_messages_is_400_naming_the_setting(api):
    messages = [{"role": "user", "content": "hi"}] * 5
    assert_error(
        api.post("/v1/chat/completions", json={"messages": messages}),
        400, code="too_many_messages", param="messages", says="VLSERVE_MAX_MESSAGES",
    )  # fmt: skip


def nested(depth: int) -> dict:
    value: dict = {"type": "string"}
    for _ in range(depth):
        value = {"type": "object", "properties": {"a": value}}
    return value


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": nested(4)}}]},
         "tools[0].function.parameters"),
        ({"metadata": nested(4)}, "metadata"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": nested(4)}}},
         "response_format.json_schema"),
    ],
)  # fmt: skip
def test_free_form_json_deeper_than_the_limit_is_400_naming_the_field(api, engine, extra, param):
    r = api.post("/v1/chat/completions", json=chat("hi", **extra))
    assert_error(r, 400, code="json_too_deep", param=param, says="VLSERVE_MAX_JSON_DEPTH")
    assert engine.prepared == 0


def test_content_parts_deeper_than_the_limit_are_refused(api):
    part = {"type": "text", "text": "hi", "extra": nested(5)}
    assert_error(
        api.post("/v1/chat/completions", json=chat([part])), 400, code="json_too_deep", param="messages[0].content"
    )


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_a_body_nested_past_what_the_parser_can_take_is_400_naming_the_setting(make_client, depth):
    client = make_client()  # the default 32 levels
    body = '{"messages": [{"role": "user", "content": "hi"}], "metadata": ' + "[" * depth + "]" * depth + "}"
    r = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400, code="json_too_deep", says="VLSERVE_MAX_JSON_DEPTH")
    just_over = chat("hi", chat_template_kwargs={"x": json.loads("[" * 32 + "]" * 32)})  # parsed, then named
    r = client.post("/v1/chat/completions", json=just_over)
    assert_error(r, 400, code="json_too_deep", param="chat_template_kwargs")


def test_a_schema_sent_as_text_is_held_to_the_depth_limit_before_it_is_parsed(api, engine):
    deep = "[" * 1000 + "]" * 1000  # brackets inside a JSON string: the body is shallow, the schema is not
    r = api.post("/v1/chat/completions", json=chat("hi", guided_json=deep))
    assert_error(r, 400, code="json_too_deep", param="guided_json", says="VLSERVE_MAX_JSON_DEPTH")
    assert engine.prepared == 0


def test_tool_call_arguments_nested_thousands_deep_are_a_400_not_a_500(api, engine):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[" * 5000 + "]" * 5000}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [call]}]
    r = api.post("/v1/chat/completions", json={"messages": [*messages, {"role": "user", "content": "and?"}]})
    assert_error(r, 400, param="messages[1].tool_calls[0].function.arguments", says="JSON object")
    assert engine.prepared == 0


def wide_schema(fields: int) -> dict:
    """An object schema of ``fields`` string properties: about 60 characters of JSON each."""
    properties = {f"field_{i:05d}": {"type": "string", "maxLength": 40} for i in range(fields)}
    return {"type": "object", "properties": properties}


def test_json_schemas_over_the_size_limit_are_refused_before_they_are_checked(make_client):
    engine = FakeEngine()
    client = make_client(engine, max_body_bytes=8 * 1024 * 1024)
    huge = {"type": "json_schema", "json_schema": {"name": "x", "schema": wide_schema(3000)}}  # about 180 KB
    r = client.post("/v1/chat/completions", json=chat("hi", response_format=huge))
    assert_error(r, 400, code="schema_too_large", param="response_format.json_schema.schema", says="131072")
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": wide_schema(1500)}} for i in range(3)]
    r = client.post("/v1/chat/completions", json=chat("hi", tools=tools))  # about 80 KB each: the second is past
    assert_error(r, 400, code="schema_too_large", param="tools[1].function.parameters", says="in all")
    r = client.post("/v1/documents", files=[("file", ("p.png", solid((8, 8)), "image/png"))],
                    data={"json_schema": json.dumps(wide_schema(2500))})  # fmt: skip
    assert_error(r, 400, code="schema_too_large", param="json_schema")
    assert engine.outputs == [], "no schema reached the engine's grammar compiler"
    small = {"type": "json_schema", "json_schema": {"name": "x", "schema": wide_schema(100)}}
    assert client.post("/v1/chat/completions", json=chat("hi", response_format=small)).status_code == 200


def test_text_over_the_character_limit_is_refused_before_tokenising(api, engine):
    r = api.post("/v1/chat/completions", json=chat([{"type": "text", "text": "word " * 300}] * 2))
    assert_error(r, 400, code="context_length_exceeded", param="messages", says="VLSERVE_MAX_PROMPT_CHARS")
    r = api.post("/v1/completions", json={"prompt": "word " * 500})
    assert_error(r, 400, code="context_length_exceeded", param="prompt", says="VLSERVE_MAX_PROMPT_CHARS")
    assert engine.prepared == 0


def test_images_over_the_request_pixel_budget_are_refused_from_their_headers(api, engine):
    huge = data_url(png_claiming(6000, 6000))  # 36 M pixels each: one fits, two do not
    parts = [{"type": "image_url", "image_url": {"url": huge}}] * 2
    r = api.post("/v1/chat/completions", json=chat([*parts, {"type": "text", "text": "compare"}]))
    assert_error(r, 400, code="image_too_large", param="messages", says="VLSERVE_MAX_REQUEST_PIXELS")
    assert engine.prepared == 0


def test_an_image_over_the_pixel_limit_is_the_same_error_in_chat_and_documents(api):
    big = png_claiming(8000, 8000)
    in_chat = api.post("/v1/chat/completions", json=chat([{"type": "image_url", "image_url": {"url": data_url(big)}}]))
    in_docs = api.post("/v1/documents", files=[("file", ("big.png", big, "image/png"))])
    for r in (in_chat, in_docs):
        assert_error(r, 400, code="image_too_large", says="VLSERVE_MAX_IMAGE_PIXELS")


def test_a_full_engine_refuses_before_fetching_any_image_streaming_or_not(make_client):
    engine = FakeEngine()
    engine.max_inflight = 0  # every place taken
    api = make_client(engine)
    refused_url = {"type": "image_url", "image_url": {"url": "http://127.0.0.2:9/x.png"}}  # 403 if it were fetched
    for stream in (False, True):
        r = api.post("/v1/chat/completions", json=chat([refused_url, {"type": "text", "text": "?"}], stream=stream))
        assert_error(r, 429, code="queue_full")
        assert r.headers["retry-after"] == "1"
    assert_error(api.post("/v1/completions", json={"prompt": "hi", "stream": True}), 429, code="queue_full")
    r = api.post("/v1/chat/vision", data={"prompt": "?"}, files=[("image_file", ("a.png", solid(), "image/png"))])
    assert_error(r, 429, code="queue_full")


def test_multipart_parts_are_counted_across_chunk_edges():
    body = b"".join(b"--XYZ\r\ncontent-disposition: form-data; name=f\r\n\r\nv\r\n" for _ in range(7)) + b"--XYZ--\r\n"
    for size in (1, 2, 3, 7, 64):
        counter = PartCounter(b"XYZ")
        for start in range(0, len(body), size):
            counter.feed(body[start : start + size])
        assert counter.parts == 7


def test_a_body_that_stalls_is_408_request_timeout():
    sent: list[dict] = []

    async def app(scope, receive, send):
        await receive()
        await receive()  # the client stalls here
        raise AssertionError("the app must not get a stalled body")

    async def receive():
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(5)
        return {"type": "http.request", "body": b"}", "more_body": False}

    messages: list[dict] = []

    async def send(message):
        messages.append(message)

    middleware = BodyLimitMiddleware(app, settings=Settings(read_timeout_s=0.2))
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    asyncio.run(asyncio.wait_for(middleware(scope, receive, send), 3))
    assert messages[0]["status"] == 408
    error = json.loads(messages[1]["body"])["error"]
    assert error["code"] == "request_timeout" and "VLSERVE_READ_TIMEOUT_S" in error["message"]


def test_images_over_the_request_pixel_budget_are_refused_by_documents_as_by_vision(api):
    huge = png_claiming(6000, 6000)  # 36 M pixels each: one fits the 40 M budget, two do not
    vision = api.post("/v1/chat/vision", data={"prompt": "compare"}, files=[("image_file", ("a.png", huge))] * 2)
    documents = api.post("/v1/documents", files=[("file", ("a.png", huge, "image/png"))] * 2)
    assert_error(vision, 400, code="image_too_large", param="image_file", says="VLSERVE_MAX_REQUEST_PIXELS")
    assert_error(documents, 400, code="image_too_large", param="file", says="VLSERVE_MAX_REQUEST_PIXELS")
    assert api.get("/v1/documents").json()["data"] == [], "nothing was stored"


def test_concurrent_requests_never_decode_more_pixels_at_once_than_the_budget(make_client):
    api = make_client(FakeEngine(), max_image_pixels=1_000_000, decode_budget_pixels=1_000_000)
    urls = [data_url(encode(chart(seed, (1000, 1000)))) for seed in range(12)]  # 1 M pixels each: one at a time

    def ask(k: int):
        parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls[2 * k : 2 * k + 2]]
        return api.post("/v1/chat/completions", json=chat([*parts, {"type": "text", "text": "compare"}]))

    with ThreadPoolExecutor(6) as pool:
        statuses = [r.status_code for r in pool.map(ask, range(6))]
    budget = api.app.state.vlserve.decode_budget
    assert statuses == [200] * 6
    assert (budget.peak, budget.in_use) == (1_000_000, 0), "every image was decoded alone"
