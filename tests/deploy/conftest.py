"""Fixtures of the deployment-file tests: promtool, and the service-tier app over the fake engine."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.api.conftest import make_client  # noqa: F401

INSTALL = "`make services` installs it as root; or `apt-get install --no-install-recommends prometheus`"


@pytest.fixture(scope="module")
def chart():
    """The chart, loaded by Helm's own engine (helm-python-sdk), for a module's renders."""
    import helm_python

    from tests.deploy.helm import CHART

    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def promtool() -> str:
    """The path of Prometheus's promtool: skipped where it is missing, but a failure on CI."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"promtool is not installed, and CI is set ({INSTALL})")
        pytest.skip(f"promtool is not installed ({INSTALL})")
    return path
