"""SIGTERM on a real server: in-flight work drains until the grace period, then ends cleanly, and it exits 0.

Past the deadline a stream ends with an error event (code ``shutting_down``) and ``[DONE]``, never cut
mid-chunk, and a whole answer is a 503; a request short enough to finish in the grace period completes.
The log has no traceback and one line saying what happened to the requests in flight.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import FAST_IMAGES, ServerProcess

pytestmark = pytest.mark.e2e

LONG = {"messages": [{"role": "user", "content": "tell me everything"}], "max_tokens": 3000, "ignore_eos": True}


# Each test stops its own server; both are started at once, side by side, as loading takes seconds.
BATCHED = {"batch_wait_ms": 2000}  # the two requests of a test, sent together, run as one batch
SERVERS = {"past_grace": {"shutdown_grace_s": 1, **BATCHED}, "in_flight": {"shutdown_grace_s": 120, **BATCHED}}


@pytest.fixture(scope="module")
def servers(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    root = tmp_path_factory.mktemp("shutdown")
    started = {
        name: ServerProcess(demo_model, root / f"{name}.log", **{"data_dir": root / name, **FAST_IMAGES, **settings})
        for name, settings in SERVERS.items()
    }
    yield started
    for server in started.values():
        server.stop()


def in_thread(work) -> tuple[threading.Thread, dict]:
    """Run ``work()`` in a thread; its result (or exception) lands in the returned dict."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the test, which asserts on it
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def read_stream(url: str, body: dict, started: threading.Event) -> tuple[int, list[str]]:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        events = []
        for line in r.iter_lines():
            if line:
                events.append(line)
                started.set()
        return r.status_code, events


def assert_clean_exit(server: ServerProcess, signalled_at: float, within: float) -> str:
    code = server.proc.wait(within)
    elapsed = time.monotonic() - signalled_at
    log = server.log()
    assert code == 0, f"exit status {code}:\n{log[-3000:]}"
    assert elapsed < within
    assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
    return log


def test_past_the_grace_period_a_stream_ends_with_an_error_event_and_done_and_an_answer_with_a_503(servers):
    server = servers["past_grace"].wait_ready()
    streaming = threading.Event()
    stream, streamed = in_thread(lambda: read_stream(server.url, LONG, streaming))
    whole, answered = in_thread(lambda: httpx.post(f"{server.url}/v1/chat/completions", json=LONG, timeout=60))
    assert streaming.wait(30), streamed
    server.wait_for_log("running batch of 2")  # both requests are being generated
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    stream.join(30)
    status, events = streamed["result"]
    assert status == 200 and events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]  # every event is whole JSON
    assert chunks[-1]["error"]["code"] == "shutting_down" and chunks[-1]["error"]["type"] == "server_error"
    assert any(c.get("choices") and c["choices"][0]["delta"].get("content") for c in chunks[:-1]), "it streamed"
    whole.join(30)
    response = answered["result"]
    assert response.status_code == 503 and response.json()["error"]["code"] == "shutting_down"
    assert response.headers["retry-after"]

    log = assert_clean_exit(server, signalled, within=20)
    assert "shutdown: 0 in-flight request(s) finished, 2 ended at the 1 s deadline" in log
    assert "generation stopped after" in log  # the engine stopped generating, not just the HTTP answer


def test_a_request_in_flight_at_sigterm_completes_and_a_second_signal_ends_the_rest_at_once(servers):
    server = servers["in_flight"].wait_ready()
    streaming = threading.Event()
    stream, streamed = in_thread(lambda: read_stream(server.url, LONG, streaming))
    short = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 60, "ignore_eos": True}
    headers = {"X-Request-Id": "short-request"}
    whole, answered = in_thread(
        lambda: httpx.post(f"{server.url}/v1/chat/completions", json=short, headers=headers, timeout=120)
    )
    assert streaming.wait(30), streamed
    server.wait_for_log("running batch of 2")  # both in the engine's batch, far from the 60th token
    server.proc.send_signal(signal.SIGTERM)

    whole.join(120)
    response = answered["result"]
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 60, "the request ran to its end"
    with pytest.raises(httpx.ConnectError):  # draining: the server no longer listens, new connections are refused
        httpx.get(f"{server.url}/v1/models", timeout=5)
    assert stream.is_alive(), "the long stream is still being drained"
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)  # impatient: a second signal ends it now, not after 120 s
    stream.join(15)
    assert "result" in streamed, streamed
    status, events = streamed["result"]
    assert status == 200 and events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "shutting_down"
    log = assert_clean_exit(server, signalled, within=15)
    assert "SIGTERM: shutting down; 2 request(s) in flight" in log
    assert "shutdown: 1 in-flight request(s) finished, 1 ended on a second signal" in log
