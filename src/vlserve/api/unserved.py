"""OpenAI endpoints vlserve does not serve answer a 404 that says so and what to use instead.

Without this a client would get a bare "no route", which reads like a wrong base URL. (Messages name
endpoints without their leading slash: the error envelope scrubs anything that looks like a path.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter

from vlserve.errors import NotFoundError

router = APIRouter()

_ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]


_UNSERVED = {
    "embeddings": "vlserve does not serve embeddings (v1/embeddings): it serves a vision-language chat model; "
    "serve an embedding model elsewhere",
    "responses": "vlserve does not serve the Responses API (v1/responses); use the Chat Completions API "
    "(POST v1/chat/completions) instead",
}


def _refuse(message: str) -> Callable[[], Awaitable[None]]:
    async def unserved() -> None:
        raise NotFoundError(message, code="unsupported_endpoint")

    return unserved


for _name, _message in _UNSERVED.items():
    for _path in (f"/v1/{_name}", f"/v1/{_name}/{{rest:path}}"):
        router.add_api_route(_path, _refuse(_message), methods=_ANY, include_in_schema=False)
