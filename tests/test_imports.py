"""What must load without torch: the API, the fake engine of the service tests, the HTTP engines.

A gateway in front of vLLM (managed or remote) never needs torch or transformers in its own process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_api_the_fake_engine_and_the_http_engines_import_without_torch():
    code = (
        "import sys\n"
        "import tests.api.fakes, vlserve.app, vlserve.cli, vlserve.engine.remote, vlserve.engine.vllm\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
