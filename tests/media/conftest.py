"""Fixtures for the media tests: a loopback-only HTTP server with the routes the fetch tests need."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.http_server import OK_PNG, Seen, serve_http


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Seen]]:
    """``(base_url, seen)`` for an HTTP server on 127.0.0.1 (loopback only) on a free port."""
    with serve_http() as hosted:
        yield hosted.url, hosted.seen


@pytest.fixture
def ok_png() -> bytes:
    """The exact bytes ``/ok.png`` serves (an 8x6 red PNG)."""
    return OK_PNG


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """``(port, ca_file)`` for an HTTPS server on 127.0.0.1 whose certificate names only images.test."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=images.test",
         "-addext", "subjectAltName=DNS:images.test"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with serve_http(context) as hosted:
        yield int(hosted.url.rsplit(":", 1)[1]), str(cert)
