"""OpenAI endpoints vlserve does not serve answer a 404 that says so and what to use instead.

Without this a client would get a bare "no route", which reads like a wrong base URL. (Messages name
endpoints without their leading slash: the error envelope scrubs anything that looks like a path.)
"""

from __future__ import annotations

from fastapi import APIRouter

from vlserve.errors import NotFoundError

router = APIRouter()

_ANY = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _unserved(message: str) -> NotFoundError:
    return NotFoundError(message, code="unsupported_endpoint")


@router.api_route("/v1/embeddings", methods=_ANY, include_in_schema=False)
@router.api_route("/v1/embeddings/{rest:path}", methods=_ANY, include_in_schema=False)
async def embeddings() -> None:
    raise _unserved(
        "vlserve does not serve embeddings (v1/embeddings): it serves a vision-language chat model; "
        "serve an embedding model elsewhere"
    )


@router.api_route("/v1/responses", methods=_ANY, include_in_schema=False)
@router.api_route("/v1/responses/{rest:path}", methods=_ANY, include_in_schema=False)
async def responses() -> None:
    raise _unserved(
        "vlserve does not serve the Responses API (v1/responses); use the Chat Completions API "
        "(POST v1/chat/completions) instead"
    )
