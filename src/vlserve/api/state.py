"""What the routers reach through ``app.state``: the runtime built once per app in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vlserve.documents.service import DocumentService
from vlserve.errors import ServiceUnavailableError
from vlserve.runtime import Runtime
from vlserve.service import GenerationService


def get_state(request: Request) -> Runtime:
    return request.app.state.vlserve


def not_ready(runtime: Runtime) -> ServiceUnavailableError:
    if runtime.load_error:
        reason = "the model failed to load"
    else:
        reason = runtime.engine.status().detail or "the model is not ready"
    return ServiceUnavailableError(f"{reason}; retry shortly", headers={"Retry-After": "5"})


def get_ready_generation(request: Request) -> GenerationService:
    runtime = get_state(request)
    if not runtime.engine.ready:
        raise not_ready(runtime)
    return runtime.generation


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
DocumentsDep = Annotated[DocumentService, Depends(get_documents)]


def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


RequestIdDep = Annotated[str, Depends(request_id)]
