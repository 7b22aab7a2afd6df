"""A real server with VLSERVE_LOG_FORMAT=json: its whole log is JSON lines, each request's access line included."""

from __future__ import annotations

import json
import re

import httpx

TRACE = "0af7651916cd43dd8448eb211c80319c"
# tqdm-style progress bars of third-party libraries (weights loading, …): not log lines
PROGRESS = re.compile(r"\d+%\||it/s\]|s/it\]")


def test_a_json_server_log_is_json_lines_with_the_trace_id(start_server) -> None:
    server = start_server(log_format="json")
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"},
        timeout=120,
    )
    assert reply.status_code == 200 and reply.headers["x-request-id"] == TRACE
    assert httpx.get(f"{server.url}/health/live", timeout=10).status_code == 200
    server.stop()  # the shutdown lines too
    lines = [line for line in server.log().splitlines() if line.strip() and not PROGRESS.search(line)]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{server.log()[-3000:]}") from None
    assert all({"time", "level", "logger", "message", "trace_id"} <= set(x) for x in parsed)
    loggers = {x["logger"] for x in parsed}
    assert "uvicorn.error" in loggers and "vlserve.server" in loggers  # uvicorn's own lines go the same way
    (access,) = [x for x in parsed if x["logger"] == "vlserve.access" and x["trace_id"] == TRACE]
    assert (access["method"], access["path"], access["status"]) == ("POST", "/v1/chat/completions", 200)
    assert access["completion_tokens"] > 0 and access["latency_ms"] > 0 and access["model"]
    assert not any("HTTP/1.1" in x["message"] for x in parsed), "uvicorn's own access log is off"
