"""What the routers reach through ``app.state``: the runtime built once per app in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vlserve.documents.service import DocumentService
from vlserve.errors import ServiceUnavailableError
from vlserve.runtime import Runtime
from vlserve.security.principal import principal_of
from vlserve.service import GenerationService
from vlserve.service.cached import CachedGeneration


def get_state(request: Request) -> Runtime:
    return request.app.state.vlserve


def not_ready(runtime: Runtime) -> ServiceUnavailableError:
    if runtime.load_error:
        reason = "the model failed to load"
    else:
        reason = runtime.engine.status().detail or "the model is not ready"
    return ServiceUnavailableError(f"{reason}; retry shortly", headers={"Retry-After": "5"})


def get_ready_generation(request: Request) -> GenerationService:
    """The generation service while the engine can take a request: loaded, warm and not stalled (a new
    request would only join the ones hanging; 503 with Retry-After, like not ready)."""
    runtime = get_state(request)
    if not runtime.engine.ready:
        raise not_ready(runtime)
    stall = runtime.generation.stalls.check()
    if stall is not None:
        message = f"the engine is stalled ({stall.detail}); retry shortly"
        raise ServiceUnavailableError(message, code="engine_stalled", headers={"Retry-After": "5"})
    return runtime.generation


async def get_ready_answers(request: Request) -> CachedGeneration:
    """Chat and text completions, through the response cache (the model ready, as for generation).
    Async, as every dependency of these routes: a sync one costs a hop to a worker thread per request."""
    get_ready_generation(request)
    return get_state(request).answers


def caller_id(request: Request) -> str | None:
    """The id of the API key a request came with; None when auth is off (everyone is the same caller)."""
    principal = principal_of(request.scope)
    return None if principal is None else principal.key_id


def get_documents(request: Request) -> DocumentService:
    """The documents service; submitting needs the model ready (a schema is compiled against its tokenizer)."""
    runtime = get_state(request)
    if runtime.documents is None:
        raise ServiceUnavailableError(
            "document jobs are not available yet; retry shortly", headers={"Retry-After": "5"}
        )
    if request.method == "POST":
        get_ready_generation(request)
    return runtime.documents


StateDep = Annotated[Runtime, Depends(get_state)]
GenerationDep = Annotated[GenerationService, Depends(get_ready_generation)]
AnswersDep = Annotated[CachedGeneration, Depends(get_ready_answers)]
DocumentsDep = Annotated[DocumentService, Depends(get_documents)]


async def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


RequestIdDep = Annotated[str, Depends(request_id)]
