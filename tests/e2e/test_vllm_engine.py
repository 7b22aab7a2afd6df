"""`vlserve serve --engine vllm` on a machine without a GPU: a stand-in `vllm` first on PATH runs `vlserve
serve` on the demo checkpoint, so the managed engine is tested end to end over the real OpenAI protocol.

Checked: the flags and key the child gets, readiness only after its /health and a warm-up, streaming,
cancellation reaching the child, a killed child restarted, SIGTERM draining before the child stops.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest
from openai import OpenAI

from tests.e2e.server import abandon_stream, stopped_after
from tests.support.fake_vllm import install, records
from vlserve.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def start_managed(start_server, tmp_path_factory):
    def start(*, ready: bool = True, extra_env: dict[str, str] | None = None, **settings):
        home = tmp_path_factory.mktemp("vllm")
        install(home / "bin")
        env = {
            "PATH": f"{home / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "FAKE_VLLM_RECORD": str(home / "starts.jsonl"),
            "FAKE_VLLM_DATA": str(home / "data"),
            **(extra_env or {}),
        }
        server = start_server(engine="vllm", env=env, ready=ready, **settings)
        server.record = home / "starts.jsonl"
        return server

    return start


@pytest.fixture(scope="module")
def managed(start_managed):
    return start_managed(
        vllm_tensor_parallel_size=2,
        vllm_expert_parallel="true",
        vllm_quantization="fp8",
        vllm_args="--max-num-seqs 8 --max-model-len 2048",
        max_images_per_request=4,
    )


def flag(argv: list[str], name: str) -> str:
    return argv[len(argv) - 1 - argv[::-1].index(name) + 1]  # the last occurrence wins, as in argparse


def test_the_child_gets_vllm_flags_from_settings_and_its_key_from_the_environment(managed):
    (start,) = records(managed.record)
    argv = start["argv"]
    assert argv[:2] == ["serve", str(managed_model(managed))]
    assert flag(argv, "--host") == "127.0.0.1" and int(flag(argv, "--port")) != managed.port
    assert flag(argv, "--served-model-name") == "vlserve-demo-random"
    assert flag(argv, "--tensor-parallel-size") == "2" and flag(argv, "--mm-encoder-tp-mode") == "data"
    assert "--enable-expert-parallel" in argv and flag(argv, "--quantization") == "fp8_per_tensor"  # fp8, translated
    assert "--enable-auto-tool-choice" in argv and flag(argv, "--tool-call-parser") == "hermes"  # Qwen's format
    assert json.loads(flag(argv, "--limit-mm-per-prompt")) == {"image": 4, "video": 2}  # video on by default
    assert json.loads(flag(argv, "--media-io-kwargs")) == {"video": {"fps": 2.0, "num_frames": 64, "max_frames": 64}}
    size = json.loads(flag(argv, "--mm-processor-kwargs"))["size"]
    assert (size["shortest_edge"], size["longest_edge"]) == (16 * 32 * 32, 256 * 32 * 32)  # the server's budget
    assert argv.count("--max-model-len") == 2 and flag(argv, "--max-model-len") == "2048"  # extra args win
    assert httpx.get(f"{managed.url}/v1/models").json()["data"][0]["max_model_len"] == 2048  # as the child says
    assert argv[-4:] == ["--max-num-seqs", "8", "--max-model-len", "2048"]
    assert start["api_key_set"] and not start["key_in_argv"]


def managed_model(server) -> str:
    return server.log().split(" from ", 1)[1].split(" on http", 1)[0]


def test_ready_only_after_the_childs_health_and_a_warm_up_then_it_streams(managed):
    log = managed.wait_for_log("vLLM ready").splitlines()  # ready is reported a moment before it is logged
    assert any("[vllm] " in line for line in log)  # the child's output, prefixed, in vlserve's log
    own = [line for line in log if "[vllm]" not in line]  # the gateway's own lines, in order

    def first(text: str) -> int:
        return next(i for i, line in enumerate(own) if text in line)

    assert first("upstream http://127.0.0.1") < first("warm-up generation done") < first("vLLM ready")
    client = OpenAI(base_url=f"{managed.url}/v1", api_key="unused", max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model="vlserve-demo-random", messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens >= 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_metrics_engine_passes_the_childs_own_metrics_through(managed):
    own = httpx.get(f"{managed.url}/metrics", timeout=30)
    engine = httpx.get(f"{managed.url}/metrics/engine", timeout=30)
    assert engine.status_code == 200 and engine.headers["content-type"].startswith("text/plain")
    # The stand-in child is itself a vlserve on default settings: its exposition shows its transformers
    # engine's places (batch + queue), while this server's engine holds VLSERVE_UPSTREAM_MAX_INFLIGHT.
    fields = Settings.model_fields
    child = fields["max_batch_size"].default + fields["max_queue_size"].default
    assert f"vlserve_engine_capacity {float(child)}" in engine.text
    assert f"vlserve_engine_capacity {float(fields['upstream_max_inflight'].default)}" in own.text


def test_a_client_that_leaves_stops_the_generation_in_the_child(managed):
    story = {"messages": [{"role": "user", "content": "write a long story"}], "max_tokens": 1500, "temperature": 0}
    abandon_stream(managed.url, story)
    log = managed.wait_for_log("the client went away")
    assert stopped_after(log)[-1] < 1500


def test_a_killed_child_is_restarted_and_sigterm_drains_before_stopping_it(start_managed):
    server = start_managed(shutdown_grace_s=120)  # never the limit here: the answer must finish, however slow
    first = records(server.record)[0]["pid"]
    os.kill(first, signal.SIGKILL)
    down = server.wait_status("/health/ready", 503, timeout=10)
    assert "killed by signal 9" in down.json()["detail"]
    server.wait_status("/health/ready", 200, timeout=120)
    second = records(server.record)[-1]
    assert second["pid"] != first and len(records(server.record)) == 2
    assert flag(second["argv"], "--port") != flag(records(server.record)[0]["argv"], "--port")

    body = {"messages": [{"role": "user", "content": "write a long story"}], "max_tokens": 120, "temperature": 0}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        server.proc.send_signal(signal.SIGTERM)  # while the answer is streaming
        rest = list(lines)
    assert rest[-2:] == ["data: [DONE]", ""] or rest[-1] == "data: [DONE]"  # the answer was finished first
    assert any('"finish_reason": "length"' in line for line in rest)
    server.proc.wait(30)
    assert not pid_alive(second["pid"])
    assert server.log().index("stopping vllm") > server.log().index("SIGTERM: shutting down")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_child_that_cannot_start_leaves_the_server_live_not_ready_saying_why(start_managed):
    server = start_managed(ready=False, extra_env={"FAKE_VLLM_EXIT": "3"})
    deadline = time.monotonic() + 20
    while "exited with status 3" not in server.wait_status("/health/ready", 503).json().get("detail", ""):
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.2)
    assert httpx.get(f"{server.url}/health/live").status_code == 200
    assert "[vllm] fake vllm: failing at start on purpose" in server.log()
