"""vLLM's sampling extensions reach a remote (or managed vLLM) upstream, each only when not its default."""

from __future__ import annotations

import asyncio
import time

from fastapi.testclient import TestClient

from tests.support.openai_stub import Stub, serve_stubs
from vlserve.app import build_app
from vlserve.engine.base import ChatTurn, EngineRequest, SamplingParams
from vlserve.engine.remote import RemoteConfig, RemoteEngine
from vlserve.engine.remote.wire import request_body
from vlserve.media.resize import ImageBudget
from vlserve.settings import Settings

EXTENSIONS = {
    "min_p": 0.05,
    "stop_token_ids": [151643, 7],
    "include_stop_str_in_output": True,
    "skip_special_tokens": False,
    "spaces_between_special_tokens": False,
}


def params(**fields: object) -> SamplingParams:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return SamplingParams(**fields)  # type: ignore[arg-type]


def test_each_extension_is_sent_when_set_and_left_to_the_upstream_when_default():
    for inputs in ({"messages": []}, {"prompt": "Once"}):
        assert not set(EXTENSIONS) & set(request_body("m", inputs, SamplingParams(), stream=True))
        body = request_body("m", inputs, params(**EXTENSIONS), stream=True)
        assert {k: body[k] for k in EXTENSIONS} == EXTENSIONS


def engine_for(stub: Stub) -> RemoteEngine:
    config = RemoteConfig((stub.url,), ImageBudget(64 * 1024, 256 * 1024), max_images=8, warmup=False)
    return RemoteEngine(config)


def test_the_remote_engine_passes_them_upstream_for_chats_and_text_completions():
    async def ask(engine: RemoteEngine, request: EngineRequest) -> str:
        prepared = await engine.prepare(request)
        await engine.check(prepared, params(**EXTENSIONS))
        return "".join([d.text async for d in engine.generate(prepared, params(**EXTENSIONS))])

    async def both(stub: Stub) -> None:
        engine = engine_for(stub)
        await engine.start()
        try:
            assert await ask(engine, EngineRequest.chat([ChatTurn.user("hi")]))
            assert await ask(engine, EngineRequest(turns=(), prompt="Once upon"))
        finally:
            await engine.close()

    with serve_stubs("up") as (stub,):
        asyncio.run(both(stub))
    assert stub.paths == ["/v1/chat/completions", "/v1/completions"]
    for sent in stub.requests:
        assert {k: sent[k] for k in EXTENSIONS} == EXTENSIONS


def test_a_chat_request_carries_them_from_the_client_to_the_upstream(tmp_path):
    with serve_stubs("up") as (stub,):
        app = build_app(Settings(data_dir=tmp_path), engine=engine_for(stub))
        with TestClient(app) as client:
            deadline = time.monotonic() + 10
            while client.get("/health/ready").status_code != 200:  # the engine starts in the background
                assert time.monotonic() < deadline, "the engine never became ready"
                time.sleep(0.05)
            reply = client.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], **EXTENSIONS}
            )
    assert reply.status_code == 200, reply.text
    assert {k: stub.requests[-1][k] for k in EXTENSIONS} == EXTENSIONS
