"""`vlserve pull --source modelscope` through the real `modelscope` client against a stand-in ModelScope hub on
loopback (fake_modelscope.py), run as the user runs it: the `vlserve` command in a subprocess with MODELSCOPE_ENDPOINT
pointing at the stand-in and the client's home and cache in the test's directory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.models.test_pull import NEEDED, checkpoint, files_in, the_error
from tests.support.fake_modelscope import FakeModelScope, fake_modelscope

pytest.importorskip("modelscope_hub", reason="the modelscope extra is not installed")

REPO = "tiny-org/tiny-vl"


@pytest.fixture
def hub() -> Iterator[FakeModelScope]:
    with fake_modelscope() as hosted:
        hosted.repo(REPO).commit(checkpoint(1), ref="master")
        yield hosted


def run(hub: FakeModelScope, tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSCOPE_", "HF_"))}
    env |= {
        "MODELSCOPE_ENDPOINT": hub.url,
        "MODELSCOPE_HOME": str(tmp_path / "ms-home"),  # nothing of the user's token or cache is read or written
        "MODELSCOPE_CACHE": str(tmp_path / "ms-cache"),
        "VLSERVE_DATA_DIR": str(tmp_path / "data"),
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "vlserve.cli", "pull", "--source", "modelscope", *args], env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_pull_from_modelscope_writes_the_manifest_at_the_resolved_commit(hub: FakeModelScope, tmp_path: Path) -> None:
    hub.cut_once.add("model.safetensors")  # the client resumes the dropped body with a Range request
    done = run(hub, tmp_path, REPO)
    assert done.returncode == 0, done.stderr
    target = tmp_path / "data" / "models" / "tiny-org--tiny-vl"
    assert files_in(target) == sorted([*NEEDED, "vlserve-manifest.json"])
    assert not hub.gets("pytorch_model.bin") and not hub.gets("README.md")
    commit = hub.repo(REPO).refs["master"]
    manifest = json.loads((target / "vlserve-manifest.json").read_text())
    assert (manifest["source"], manifest["repo_id"], manifest["revision"]) == ("modelscope", REPO, commit)
    files = checkpoint(1)
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        n: hashlib.sha256(files[n]).hexdigest() for n in NEEDED
    }
    # The branch is listed once; every file is fetched at the commit it resolved to.
    listing = parse_qs(urlsplit(hub.requests[0].path).query)
    assert hub.requests[0].path.startswith(f"/api/v1/models/{REPO}/repo/files?") and listing["Revision"] == ["master"]
    assert {parse_qs(urlsplit(r.path).query)["Revision"][0] for r in hub.gets()} == {commit}
    weights = hub.gets("model.safetensors")
    assert len(weights) == 2 and weights[1].headers.get("Range") == f"bytes={len(files['model.safetensors']) // 2}-"
    assert not (target / ".cache").exists()
    before = len(hub.gets())
    assert run(hub, tmp_path, REPO).returncode == 0
    assert len(hub.gets()) == before


def test_a_corrupted_file_from_modelscope_is_named_and_deleted(hub: FakeModelScope, tmp_path: Path) -> None:
    hub.corrupt.add("model.safetensors")
    target = tmp_path / "ckpt"
    done = run(hub, tmp_path, REPO, "--dir", str(target))
    assert done.returncode == 1
    assert "model.safetensors does not match the hub's SHA-256" in the_error(done.stderr)
    assert not (target / "model.safetensors").exists() and not (target / "vlserve-manifest.json").exists()
    hub.corrupt.clear()
    assert run(hub, tmp_path, REPO, "--dir", str(target)).returncode == 0


def test_an_unknown_revision_or_unreachable_modelscope_is_one_line(hub: FakeModelScope, tmp_path: Path) -> None:
    done = run(hub, tmp_path, REPO, "--revision", "no-such-branch")
    assert done.returncode == 1
    assert the_error(done.stderr) == (
        f"error: {REPO} at revision 'no-such-branch' is not on {hub.url} (a private one needs a token)"
    )
    # The discard port refuses; the client's own retries (about 17 s by default) are cut to one.
    closed = run(hub, tmp_path, REPO, MODELSCOPE_ENDPOINT="http://127.0.0.1:9", MODELSCOPE_API_MAX_RETRIES="1")
    assert closed.returncode == 1 and "cannot reach http://127.0.0.1:9" in the_error(closed.stderr)
    assert "MODELSCOPE_ENDPOINT" in closed.stderr
