"""`vlserve pull` through the real huggingface_hub client against a stand-in Hub on loopback (fake_hub.py),
run as the user runs it: the `vlserve` command in a subprocess with HF_ENDPOINT pointing at the stand-in and HF_HOME
in the test's directory."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from tests.support.fake_hub import FakeHub, fake_hub

REPO = "tiny-org/tiny-vl"
RESUME_WEIGHTS = 24 * 1024 * 1024  # over huggingface_hub's 10 MiB write chunk, so an interrupted pull leaves some


def checkpoint(seed: int, weight_bytes: int = 64 * 1024) -> dict[str, bytes]:
    """A small random checkpoint as a hub repository holds it, with a duplicate .bin and repo chaff."""
    rng = np.random.default_rng(seed)
    weights = save({"w": rng.standard_normal(weight_bytes // 4).astype(np.float32)})
    return {
        "model.safetensors": weights,
        "pytorch_model.bin": rng.bytes(4096),
        "config.json": json.dumps({"model_type": "qwen3_vl", "seed": seed}).encode(),
        "generation_config.json": b'{"do_sample": false}',
        "tokenizer.json": b'{"version": "1.0", "model": {}}',
        "tokenizer_config.json": b'{"model_max_length": 4096}',
        "vocab.json": b'{"a": 0}',
        "merges.txt": b"#version: 0.2\n",
        "preprocessor_config.json": b'{"patch_size": 16}',
        "chat_template.jinja": b"{% for m in messages %}{{ m.content }}{% endfor %}",
        "README.md": b"# tiny\n",
        ".gitattributes": b"*.safetensors filter=lfs\n",
    }


NEEDED = sorted(n for n in checkpoint(0) if n not in ("pytorch_model.bin", "README.md", ".gitattributes"))


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with fake_hub() as hosted:
        hosted.repo(REPO).commit(checkpoint(1))
        yield hosted


def run(hub: FakeHub, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlserve.cli", *args], env=_env(hub, tmp_path, **env),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _env(hub: FakeHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf-home"),  # nothing of the user's cache or token is read or written
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "VLSERVE_DATA_DIR": str(tmp_path / "data"),
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }
    return env


def the_error(stderr: str) -> str:
    """The one error line of a failed command (it may have said which commit it was pulling before that)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def files_in(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def test_pull_fetches_only_what_a_server_needs_and_writes_the_manifest(hub: FakeHub, tmp_path: Path) -> None:
    done = run(hub, tmp_path, "pull", REPO)
    assert done.returncode == 0, done.stderr
    target = tmp_path / "data" / "models" / "tiny-org--tiny-vl"
    assert files_in(target) == sorted([*NEEDED, "vlserve-manifest.json"])
    assert not hub.gets("pytorch_model.bin") and not hub.gets("README.md")
    manifest = json.loads((target / "vlserve-manifest.json").read_text())
    assert manifest["source"] == "huggingface" and manifest["repo_id"] == REPO
    assert manifest["revision"] == hub.repo(REPO).refs["main"]
    files = checkpoint(1)
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        n: hashlib.sha256(files[n]).hexdigest() for n in NEEDED
    }
    assert f"pulled {len(NEEDED)} files" in done.stdout
    # The checkpoint passes the offline check, and a second pull fetches nothing again.
    assert run(hub, tmp_path, "verify", str(target)).returncode == 0
    before = len(hub.gets())
    assert run(hub, tmp_path, "pull", REPO).returncode == 0
    assert len(hub.gets()) == before


def test_an_interrupted_pull_resumes_where_it_stopped(hub: FakeHub, tmp_path: Path) -> None:
    files = checkpoint(2, weight_bytes=RESUME_WEIGHTS)
    hub.repo("tiny-org/big").commit(files)
    hub.stall.add("model.safetensors")
    target = tmp_path / "big"
    args = [sys.executable, "-m", "vlserve.cli", "pull", "tiny-org/big", "--dir", str(target)]
    first = subprocess.Popen(args, env=_env(hub, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = target / ".cache" / "vlserve" / f"{hashlib.sha256(files['model.safetensors']).hexdigest()}.part"
    deadline = time.monotonic() + 60
    while not (partial.is_file() and partial.stat().st_size >= 10 * 1024 * 1024) and time.monotonic() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)  # Ctrl-C mid-file
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    kept = partial.stat().st_size
    assert 0 < kept < len(files["model.safetensors"])

    hub.stall.clear()
    hub.release.set()
    done = run(hub, tmp_path, "pull", "tiny-org/big", "--dir", str(target))
    assert done.returncode == 0, done.stderr
    resumed = hub.gets("model.safetensors")[-1]
    assert resumed.headers.get("Range") == f"bytes={kept}-"
    assert (target / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert not (target / ".cache").exists()


def test_a_connection_dropped_mid_file_is_resumed_by_the_client(hub: FakeHub, tmp_path: Path) -> None:
    files = checkpoint(2, weight_bytes=RESUME_WEIGHTS)
    hub.repo("tiny-org/big").commit(files)
    hub.cut_once.add("model.safetensors")
    done = run(hub, tmp_path, "pull", "tiny-org/big", "--dir", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    first, second = hub.gets("model.safetensors")
    assert "Range" not in first.headers and second.headers["Range"] == f"bytes={10 * 1024 * 1024}-"
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_a_corrupted_weight_file_is_caught_by_its_sha256(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt.add("model.safetensors")
    target = tmp_path / "m"
    done = run(hub, tmp_path, "pull", REPO, "--dir", str(target))
    assert done.returncode == 1
    line = the_error(done.stderr)
    assert "model.safetensors" in line and "SHA-256" in line
    assert not (target / "model.safetensors").exists() and not (target / "vlserve-manifest.json").exists()
    # The next pull, from a hub that serves the right bytes, fetches the deleted file again and succeeds.
    hub.corrupt.clear()
    assert run(hub, tmp_path, "pull", REPO, "--dir", str(target)).returncode == 0


def test_verify_catches_a_flipped_byte_in_a_pulled_checkpoint(hub: FakeHub, tmp_path: Path) -> None:
    target = tmp_path / "m"
    assert run(hub, tmp_path, "pull", REPO, "--dir", str(target)).returncode == 0
    weights = target / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    done = run(hub, tmp_path, "verify", str(target))
    assert done.returncode == 1 and "model.safetensors" in done.stderr


def test_revision_pins_a_commit_and_the_manifest_records_it(hub: FakeHub, tmp_path: Path) -> None:
    repo = hub.repo(REPO)
    old = repo.refs["main"]
    repo.commit(checkpoint(3))  # main moves on
    target = tmp_path / "m"
    done = run(hub, tmp_path, "pull", REPO, "--revision", old, "--dir", str(target))
    assert done.returncode == 0, done.stderr
    assert json.loads((target / "vlserve-manifest.json").read_text())["revision"] == old
    assert (target / "config.json").read_bytes() == checkpoint(1)["config.json"]
    assert all(f"/resolve/{old}/" in r.path for r in hub.gets())

    missing = run(hub, tmp_path, "pull", REPO, "--revision", "no-such-branch", "--dir", str(tmp_path / "n"))
    assert missing.returncode == 1 and "no-such-branch" in the_error(missing.stderr)


def test_a_gated_repo_needs_hf_token(hub: FakeHub, tmp_path: Path) -> None:
    hub.repo(REPO).gated_token = "hf_granted"
    refused = run(hub, tmp_path, "pull", REPO, "--dir", str(tmp_path / "a"))
    assert refused.returncode == 1 and "gated" in the_error(refused.stderr) and "HF_TOKEN" in refused.stderr
    done = run(hub, tmp_path, "pull", REPO, "--dir", str(tmp_path / "b"), HF_TOKEN="hf_granted")
    assert done.returncode == 0, done.stderr


def test_the_disk_space_is_checked_before_the_first_byte(hub: FakeHub, tmp_path: Path) -> None:
    hub.advertised_size["model.safetensors"] = 10**18  # an exabyte: no test machine has it free
    done = run(hub, tmp_path, "pull", REPO, "--dir", str(tmp_path / "m"))
    assert done.returncode == 1 and "not enough disk space" in done.stderr
    assert not hub.gets()


def test_unknown_models_and_unreachable_hubs_are_one_line(hub: FakeHub, tmp_path: Path) -> None:
    for args, needle in [
        (["pull", "not-a-model"], "qwen3-vl-2b"),  # names the catalogue
        (["pull", "nobody/nothing"], "nobody/nothing is not on"),
    ]:
        done = run(hub, tmp_path, *args)
        assert done.returncode != 0 and needle in the_error(done.stderr)
    closed = run(hub, tmp_path, "pull", REPO, HF_ENDPOINT="http://127.0.0.1:9")  # discard port: refused
    assert closed.returncode == 1 and "cannot reach http://127.0.0.1:9" in the_error(closed.stderr)


def test_pull_list_shows_the_catalogue(hub: FakeHub, tmp_path: Path) -> None:
    done = run(hub, tmp_path, "pull", "--list", COLUMNS="200")
    assert done.returncode == 0
    for name in ("qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b", "qwen3-vl-30b-a3b", "Qwen/Qwen3-VL-2B-Instruct"):
        assert name in done.stdout
    assert not hub.requests
