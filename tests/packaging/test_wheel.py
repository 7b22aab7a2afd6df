"""The built wheel on its own: `python -m build` makes an sdist and a wheel; the wheel, installed (not editable)
into a fresh venv and run from outside the checkout, builds the demo model, serves it, answers a chat request and
a document job, migrates a new database and serves /docs and the playground.

A minute or two: marked `wheel`, left out of the default run; `make test` runs it beside the suite, after the
image test; `make wheel-test` alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from openai import OpenAI
from uv import find_uv_bin

from tests.e2e.server import FAST_IMAGES, ServerProcess
from tests.e2e.test_documents import FACTS, submit, wait_for
from tests.support.databases import postgres_database
from tests.support.images import data_url, solid
from tests.support.pdfs import text_pdf

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
VERSION = re.search(r'__version__ = "(.+)"', (ROOT / "src" / "vlserve" / "__init__.py").read_text())[1]
# What a server needs at run time besides its Python modules, by the path it has in the wheel.
PACKAGE_DATA = (
    "vlserve/web/index.html",
    "vlserve/web/app.js",
    "vlserve/demo/assets/chat_template.jinja",
    "vlserve/store/migrations/env.py",
    "vlserve/store/migrations/script.py.mako",
)


def run(*args: str | Path, cwd: Path, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel and its declared dependencies (the CPU torch this machine's pip finds).

    uv installs them: it reads this machine's pip configuration (indexes, wheel directories, constraints, CA
    bundle) and unpacks torch in seconds, where pip takes a minute of the two cores the suite runs on beside it."""
    home = tmp_path_factory.mktemp("wheel-venv")
    uv = find_uv_bin()
    python = home / "venv" / "bin" / "python"
    run(uv, "venv", "--quiet", "--python", sys.executable, home / "venv", cwd=home)
    wheel = next(dist.glob("vlserve-*.whl"))
    # Compiled at install, as pip does: with PYTHONDONTWRITEBYTECODE set, each process would compile torch again.
    install = [uv, "pip", "install", "--quiet", "--python", python, "--link-mode", "copy", "--compile-bytecode"]
    install += uv_pip_options()
    run(*install, f"torch=={version('torch')}", wheel, cwd=home, env=uv_environment())
    run(uv, "pip", "check", "--python", python, cwd=home)
    return home / "venv"


def pip_configuration() -> dict[str, str]:
    """pip's settings on this machine (files and PIP_* variables), as `pip config list` shows them."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():  # global.find-links='/opt/wheels', :env:.cert='...'; the later wins
        key, _, value = line.partition("=")
        if key.split(".", 1)[0] in ("global", "install", ":env:"):
            settings[key.split(".", 1)[1]] = value.strip("'\"")
    return settings


def uv_pip_options() -> list[str]:
    """The indexes, wheel directories and constraints pip uses here, for uv (which reads no pip.conf)."""
    config = pip_configuration()
    options = ["--index-strategy", "unsafe-best-match"]  # as pip: the best version from any index
    if config.get("index-url"):
        options += ["--index-url", config["index-url"]]
    for key, flag in (("extra-index-url", "--extra-index-url"), ("find-links", "--find-links")):
        for value in config.get(key, "").split():
            options += [flag, value]
    if config.get("constraint"):
        options += ["--constraint", config["constraint"]]
    return options


def uv_environment() -> dict[str, str]:
    cert = pip_configuration().get("cert")
    return {**os.environ, **({"SSL_CERT_FILE": cert} if cert else {})}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    yield from postgres_database()


def test_sdist_and_wheel_carry_the_package_data_and_the_license(dist):
    wheel = next(dist.glob(f"vlserve-{VERSION}-py3-none-any.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [name for name in PACKAGE_DATA if name not in names] == []
    assert any(name.startswith("vlserve/store/migrations/versions/") for name in names)
    assert f"vlserve-{VERSION}.dist-info/licenses/LICENSE" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/", "deploy/"))]
    with tarfile.open(next(dist.glob(f"vlserve-{VERSION}.tar.gz"))) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"} <= members
    assert [name for name in PACKAGE_DATA if f"src/{name}" not in members] == []


def test_the_installed_wheel_prints_its_version_and_imports_from_the_venv(venv, tmp_path):
    assert run(venv / "bin" / "vlserve", "--version", cwd=tmp_path).strip() == f"vlserve {VERSION}"
    where = run(venv / "bin" / "python", "-c", "import vlserve; print(vlserve.__file__)", cwd=tmp_path).strip()
    assert Path(where).is_relative_to(venv), where


def test_the_installed_wheel_builds_the_demo_serves_it_and_migrates_a_new_database(venv, database, tmp_path):
    engine = sa.create_engine(database)
    try:
        with engine.connect() as connection:
            assert "alembic_version" not in sa.inspect(connection).get_table_names()
        data = tmp_path / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")} | {"VLSERVE_DATA_DIR": str(data)}
        built = subprocess.run(
            [venv / "bin" / "vlserve", "demo", "build"], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert built.returncode == 0 and "demo model ready" in built.stdout + built.stderr, built.stdout + built.stderr
        server = ServerProcess(
            None, tmp_path / "server.log", command=[str(venv / "bin" / "vlserve")], cwd=tmp_path,
            data_dir=data, database_url=database, document_poll_s=0.2, document_longest_side=256,
            document_max_tokens=64, document_temperatures="0", **FAST_IMAGES,
        )  # fmt: skip
        try:
            server.wait_ready()
            _ask(server)
            _read_a_document(server)
            docs = httpx.get(f"{server.url}/docs", timeout=10)
            assert docs.status_code == 200 and "swagger-ui" in docs.text
            assert httpx.get(f"{server.url}/openapi.json", timeout=10).json()["info"]["version"] == VERSION
            for path in ("/", "/web/app.js"):  # the playground's files, from the installed package
                assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200, path
        finally:
            server.stop()
        with engine.connect() as connection:
            revision = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        assert revision, "the server did not migrate the new database"
    finally:
        engine.dispose()


def _ask(server: ServerProcess) -> None:
    url = data_url(solid())
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    answer = client.chat.completions.create(
        model=client.models.list().data[0].id,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": "What colour is this?"},
                ],
            }
        ],
        max_tokens=8,
    )
    assert answer.choices[0].message.content and answer.usage.prompt_tokens > 0


def _read_a_document(server: ServerProcess) -> None:
    job = submit(server, text_pdf(2), json_schema=json.dumps(FACTS))
    assert wait_for(server, job["id"])["status"] == "succeeded"
    result = httpx.get(f"{server.url}/v1/documents/{job['id']}/result", timeout=10).json()
    assert [page["data"]["kind"] in ("bar", "line") for page in result["pages"]] == [True, True], result
