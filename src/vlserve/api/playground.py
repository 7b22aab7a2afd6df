"""The browser playground: ``/`` and its files under ``/web/``, served from the package (``vlserve/web``).

No build step and nothing from another origin: the page, its ES modules, stylesheet and icon all come
from this server, and every response carries a Content-Security-Policy that allows only this origin
(no inline script or style, no eval, no frames). The page calls the public API like any client
(``/v1/chat/completions``, ``/v1/documents``) with the API key the user types in, so serving it adds no
privilege: the files hold nothing secret and answer without a key. ``VLSERVE_PLAYGROUND=0`` leaves the
routes out (404).
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from vlserve.errors import NotFoundError

router = APIRouter(include_in_schema=False)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ASSET_PREFIX = "/web/"  # with "/": the paths security.auth.is_playground leaves open
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.(js|css|svg)")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml"}

# Only this origin: scripts and styles from files (no inline, no eval), previews of the user's own files as
# blob: URLs, API calls to this server; no frames, no forms posting elsewhere, no plugins.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-cache",  # revalidated (ETag) on each load: an upgraded server's page is seen at once
}


def _file(name: str, media_type: str) -> FileResponse:
    return FileResponse(WEB_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
async def page() -> FileResponse:
    return _file("index.html", "text/html; charset=utf-8")


@router.get(ASSET_PREFIX + "{name}")
async def asset(name: str) -> FileResponse:
    match = _NAME.fullmatch(name)
    if match is None or not (WEB_DIR / name).is_file():
        raise NotFoundError(f"the playground has no file {name!r}", param="name")
    return _file(name, _TYPES[match.group(1)])
