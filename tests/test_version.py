"""One version: the package's, which the changelog, the chart's appVersion and `vlserve --version` follow."""

import re
from pathlib import Path

import yaml

from vlserve import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_semantic_and_has_its_changelog_section():
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.MULTILINE)


def test_the_charts_app_version_is_this_release_on_its_vllm():
    chart = yaml.safe_load((ROOT / "deploy" / "helm" / "vlserve" / "Chart.yaml").read_text())
    assert chart["appVersion"].startswith(f"{__version__}-vllm")
