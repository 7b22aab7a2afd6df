"""The documentation site builds with every page in the nav and every link resolving; the README stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)|<img [^>]*src=\"([^\"]+)\"")


def test_the_site_builds_strictly(tmp_path):
    """Strict: a page missing from the nav, a link to no file and an anchor to no heading all fail the build."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    result = subprocess.run(build, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_reference_pages_are_generated_from_the_current_code():
    """docs/reference/ is what the settings classes, the typer app and the OpenAPI schema say now."""
    check = [sys.executable, str(ROOT / "docs" / "_hooks" / "reference.py"), "--check"]
    result = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_is_at_most_200_lines():
    assert len(README.read_text().splitlines()) <= 200


def test_every_relative_link_in_the_readme_points_at_a_file():
    targets = [a or b for a, b in LINK.findall(README.read_text())]
    relative = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert any(t.startswith("docs/") for t in relative), targets
    missing = [t for t in relative if not (ROOT / t.split("#", 1)[0]).exists()]
    assert missing == []
