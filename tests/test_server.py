"""The server process's parts without a process: binding first, the drain gate, ending streams and answers
at the shutdown deadline, worker names."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from vlserve.api.cancellation import cancel_on_disconnect
from vlserve.api.chat_format import ending_cleanly
from vlserve.api.draining import DrainGate
from vlserve.errors import ShuttingDownError
from vlserve.server import BindError, BriefStartupFailure, bind
from vlserve.service.shutdown import Drain, current_drain
from vlserve.settings import Settings


def in_loop(test):
    """Run an async test in a fresh event loop (its context variables die with it)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> object:
        return asyncio.run(test(*args, **kwargs))

    return run


# --- binding first ---------------------------------------------------------------------------------------


def test_binding_a_port_in_use_fails_with_one_clear_line():
    taken = bind("127.0.0.1", 0)[0]
    port = taken.getsockname()[1]
    try:
        with pytest.raises(BindError) as caught:
            bind("127.0.0.1", port)
        assert str(caught.value) == (
            f"cannot serve: 127.0.0.1:{port} is already in use (another vlserve or another program listens "
            "there); stop it or choose another --port"
        )
    finally:
        taken.close()


def test_a_bound_port_already_accepts_connections_and_is_free_again_once_closed():
    sockets = bind("127.0.0.1", 0)
    port = sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # waits in the backlog until serving starts
    for sock in sockets:
        sock.close()
    for sock in bind("127.0.0.1", port):  # no TIME_WAIT trouble on a restart
        sock.close()


def test_an_address_that_is_not_this_machines_is_one_line():
    with pytest.raises(BindError, match=r"^cannot serve: cannot listen on 192\.0\.2\.1:\d+ \(.+\)$"):
        bind("192.0.2.1", 0)  # TEST-NET: never local; binding sends nothing


@in_loop
async def test_a_start_up_that_fails_is_one_line_saying_why():
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise ConnectionRefusedError("the database at 127.0.0.1:5432 refused the connection\nmore detail")
        yield

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "lifespan.startup"}

    async def send(message: dict) -> None:
        sent.append(message)

    with pytest.raises(ConnectionRefusedError):
        await BriefStartupFailure(Starlette(lifespan=lifespan))({"type": "lifespan", "state": {}}, receive, send)
    reason = "the database at 127.0.0.1:5432 refused the connection"
    assert sent == [{"type": "lifespan.startup.failed", "message": f"cannot serve: start-up failed: {reason}"}]


# --- the drain gate ----------------------------------------------------------------------------------------


async def echo_drain(scope, receive, send) -> None:
    """An app that answers whether it runs with the server's drain in reach."""
    body = json.dumps({"drain": current_drain.get() is not None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@in_loop
async def test_once_draining_new_requests_get_503_shutting_down_and_liveness_still_answers():
    drain = Drain()
    gate = DrainGate(echo_drain, drain)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://test") as client:
        assert (await client.get("/v1/models")).json() == {"drain": True}
        drain.begin(30)
        refused = await client.post("/v1/chat/completions", json={})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        assert refused.json()["error"]["type"] == "server_error"
        assert refused.headers["retry-after"] == "5" and refused.headers["connection"] == "close"
        assert (await client.get("/health/ready")).status_code == 503
        assert (await client.get("/health/live")).status_code == 200
    assert drain.in_flight == 0


# --- ending work at the deadline ---------------------------------------------------------------------------


class Deltas:
    """Stands for the engine's deltas: ``aclose`` is what cancels the generation."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> Deltas:
        return self

    async def __anext__(self) -> None:
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


async def endless(every_s: float) -> AsyncIterator[str]:
    n = 0
    while True:
        await asyncio.sleep(every_s)
        n += 1
        yield f'data: {{"n": {n}}}\n\n'


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [event async for event in stream]


@in_loop
async def test_a_stream_past_the_deadline_ends_with_an_error_event_and_done_and_generation_stops():
    drain, deltas = Drain(), Deltas()
    current_drain.set(drain)
    drain.begin(0.3)
    events = await asyncio.wait_for(collect(ending_cleanly(endless(0.02), deltas)), 5)
    assert events[-1] == "data: [DONE]\n\n"
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert (error["code"], error["type"]) == ("shutting_down", "server_error")
    assert "VLSERVE_SHUTDOWN_GRACE_S" in error["message"]
    assert all(json.loads(e.removeprefix("data: "))["n"] for e in events[:-2]), "whole events, none cut"
    assert len(events) > 3 and deltas.closed and drain.ended == 1


@in_loop
async def test_a_stream_waiting_for_its_next_token_when_draining_begins_is_ended_at_the_new_deadline():
    drain, deltas = Drain(), Deltas()
    current_drain.set(drain)
    reading = asyncio.ensure_future(collect(ending_cleanly(endless(3600), deltas)))
    await asyncio.sleep(0.05)  # waiting inside the stream, with no deadline yet
    drain.begin(0.1)
    events = await asyncio.wait_for(reading, 5)
    assert [json.loads(e.removeprefix("data: "))["error"]["code"] for e in events[:-1]] == ["shutting_down"]
    assert events[-1] == "data: [DONE]\n\n" and deltas.closed


@in_loop
async def test_a_second_signal_ends_a_stream_at_once():
    drain = Drain()
    current_drain.set(drain)
    reading = asyncio.ensure_future(collect(ending_cleanly(endless(3600), Deltas())))
    drain.begin(3600)
    await asyncio.sleep(0.05)
    drain.expire_now()
    events = await asyncio.wait_for(reading, 5)
    assert events[-1] == "data: [DONE]\n\n" and "shutting_down" in events[-2]
    assert "ended on a second signal" in drain.summary()


@in_loop
async def test_outside_a_served_request_a_stream_is_never_cut():
    events = await collect(ending_cleanly(endless_until(5), Deltas()))
    assert len(events) == 6 and events[-1] == "data: [DONE]\n\n"


async def endless_until(n: int) -> AsyncIterator[str]:
    for i in range(n):
        yield f'data: {{"n": {i}}}\n\n'


class SilentRequest:
    """A request whose client never disconnects."""

    async def receive(self) -> dict:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}


@in_loop
async def test_an_answer_past_the_deadline_is_a_503_and_its_work_is_cancelled():
    drain = Drain()
    current_drain.set(drain)
    drain.in_flight = 1
    drain.begin(0.1)
    cancelled = asyncio.Event()

    async def generate() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    with pytest.raises(ShuttingDownError) as caught:
        await asyncio.wait_for(cancel_on_disconnect(SilentRequest(), generate()), 5)  # type: ignore[arg-type]
    assert caught.value.status_code == 503 and caught.value.code == "shutting_down"
    assert cancelled.is_set()
    drain.in_flight = 0
    assert drain.summary() == "0 in-flight request(s) finished, 1 ended at the 0.1 s deadline"


@in_loop
async def test_an_answer_that_finishes_within_the_grace_period_is_returned():
    drain = Drain()
    current_drain.set(drain)
    drain.begin(5)

    async def generate() -> str:
        await asyncio.sleep(0.05)
        return "done"

    assert await cancel_on_disconnect(SilentRequest(), generate()) == "done"  # type: ignore[arg-type]
    assert drain.ended == 0


# --- worker names ------------------------------------------------------------------------------------------


def test_worker_names_keep_the_readable_prefix_and_differ_between_processes(tmp_path):
    one = Settings(data_dir=tmp_path, worker_id="doc-server")
    other = Settings(data_dir=tmp_path, worker_id="doc-server")  # a second process, configured the same
    assert one.worker_name() == one.worker_name(), "fixed for the life of one server"
    assert one.worker_name().startswith("doc-server/") and other.worker_name().startswith("doc-server/")
    assert one.worker_name() != other.worker_name()
    assert Settings(data_dir=tmp_path, port=9000).worker_name().startswith(f"{socket.gethostname()}:9000/")
