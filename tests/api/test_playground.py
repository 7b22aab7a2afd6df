"""The playground's files at / and /web/: served from the package under a same-origin CSP, open without a key
while auth guards the API, and gone (404) with VLSERVE_PLAYGROUND=0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import vlserve

WEB = Path(vlserve.__file__).resolve().parent / "web"


def test_the_page_and_its_files_are_served_with_a_same_origin_policy(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-request-id"]
    script = client.get("/web/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert client.get("/web/app.css").headers["content-type"].startswith("text/css")


def test_every_file_the_page_references_is_served_and_nothing_is_external(client):
    """index.html and the modules name only /web/ files; each answers 200; no http(s) URL, no inline code."""
    html = client.get("/").text
    assert "<style" not in html and " style=" not in html and "onclick" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None  # every script is a file
    names = set(re.findall(r"/web/([\w.-]+)", html))
    for module in WEB.glob("*.js"):
        names |= set(re.findall(r'from "\./([\w.-]+)"', module.read_text()))
        assert re.search(r"\beval\(|new Function\(", module.read_text()) is None
    assert {"app.js", "app.css", "icon.svg", "api.js", "i18n.js"} <= names
    for name in names:
        assert client.get(f"/web/{name}").status_code == 200, name
    for path in WEB.iterdir():
        assert re.search(r"https?://(?!www\.w3\.org/2000/svg)", path.read_text()) is None, path.name


@pytest.mark.parametrize("name", ["nope.js", "index.html", "..%2Fapp.py", "app.js.map", ".hidden.js"])
def test_unknown_files_are_a_404_in_the_error_envelope(client, name):
    response = client.get(f"/web/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_turned_off_the_root_is_a_404_again(make_client):
    client = make_client(playground=False)
    assert client.get("/").status_code == 404
    assert client.get("/web/app.js").status_code == 404


def test_with_auth_on_the_page_opens_without_a_key_and_the_api_still_needs_one(make_client):
    client = make_client(require_auth=True)
    assert client.get("/").status_code == 200
    assert client.get("/web/app.js").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/docs").status_code == 401


def test_with_auth_on_and_the_playground_off_the_root_needs_a_key_as_before(make_client):
    client = make_client(require_auth=True, playground=False)
    assert client.get("/").status_code == 401
