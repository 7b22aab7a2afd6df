"""deploy/Dockerfile.cpu built for real (buildah) and run (podman): the container answers /health/ready.

Minutes, not seconds (about 7 the first time, most of it pip; about 30 s with cached layers): marked `image`,
left out of the default run; `make test` runs it after the suite, `make image-test` alone. How the build stands
in for docker.io and download.pytorch.org: tests/deploy/image.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy import image

pytestmark = [pytest.mark.image, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def built() -> str:
    missing = image.missing_tools()
    if missing:
        message = f"{', '.join(missing)} not installed ({image.INSTALL})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return image.build()


def test_the_image_runs_as_the_unprivileged_user_and_serves_the_demo_model(built):
    config = json.loads(subprocess.run(["podman", "image", "inspect", built], capture_output=True, text=True).stdout)
    config = config[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"][:2] == ["vlserve", "serve"]
    port = image.free_port()
    # Its own ENTRYPOINT, with the listen address moved to loopback: the last --host and --port win.
    with image.running(built, "--host", "127.0.0.1", "--port", str(port)) as (log, process):
        response = image.wait_ready(f"http://127.0.0.1:{port}/health/ready", process)
        assert response.status_code == 200, response.text + Path(log).read_text()[-3000:]
    assert process.returncode == 0, f"the server did not stop cleanly on SIGTERM: {Path(log).read_text()[-3000:]}"
