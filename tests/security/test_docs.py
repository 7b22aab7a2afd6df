"""Swagger UI at /docs works on an air-gapped network: every file it loads comes from this server."""

from __future__ import annotations

import re

from tests.security.keyed import assert_error, new_key, serving

_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


def references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCE.findall(html)]


def test_the_docs_page_references_no_external_host_and_its_assets_are_served(tmp_path):
    with serving(tmp_path, require_auth=False) as api:
        page = api.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        html = page.text
        refs = references(html)
        assert "/docs/assets/swagger-ui-bundle.js" in refs and "/docs/assets/swagger-ui.css" in refs
        assert "/docs/assets/favicon.png" in refs and "/openapi.json" in refs
        assert all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
        assert not re.search(r"https?://|//cdn|jsdelivr|unpkg|googleapis", html), "nothing from outside"
        assert '"validatorUrl": null' in html, "the online validator badge would call validator.swagger.io"
        kinds = {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
        for name, kind in kinds.items():
            asset = api.get(f"/docs/assets/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"], name
            assert len(asset.content) > 1000
        assert "SwaggerUIBundle" in api.get("/docs/assets/swagger-ui-bundle.js").text
        assert api.get("/openapi.json").json()["info"]["title"] == "vlserve"
        assert_error(api.get("/docs/assets/../../settings.py"), 404)
        assert_error(api.get("/docs/assets/redoc.standalone.js"), 404, says="no Swagger UI asset")


def test_with_auth_on_the_docs_and_the_schema_need_a_key(tmp_path):
    with serving(tmp_path) as api:
        _, headers = new_key(api, "docs reader", ["documents"])
        for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
            assert_error(api.get(path), 401, code="missing_api_key")
            assert api.get(path, headers=headers).status_code == 200, path


def test_docs_off_turns_off_the_page_its_assets_and_the_schema(tmp_path):
    with serving(tmp_path, require_auth=False, docs=False) as api:
        for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css", "/redoc"):
            assert_error(api.get(path), 404)
