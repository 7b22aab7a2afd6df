"""What the routers reach through ``app.state``: typed, built once per app in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from vlserve.api.chat_service import ChatService
from vlserve.engine.base import Engine
from vlserve.errors import ServiceUnavailableError
from vlserve.settings import Settings

if TYPE_CHECKING:
    from vlserve.documents.service import DocumentService


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    chat: ChatService
    load_error: str | None = None
    documents: DocumentService | None = None


def get_state(request: Request) -> AppState:
    return request.app.state.vlserve


def get_ready_chat(request: Request) -> ChatService:
    state = get_state(request)
    if not state.engine.ready:
        reason = "the model failed to load" if state.load_error else "the model is still loading"
        raise ServiceUnavailableError(f"{reason}; retry shortly", headers={"Retry-After": "5"})
    return state.chat


def get_documents(request: Request) -> DocumentService:
    """The documents service; submitting needs the model ready (a schema is compiled against its tokenizer)."""
    state = get_state(request)
    if state.documents is None:
        raise ServiceUnavailableError(
            "document jobs are not available yet; retry shortly", headers={"Retry-After": "5"}
        )
    if request.method == "POST":
        get_ready_chat(request)
    return state.documents


StateDep = Annotated[AppState, Depends(get_state)]
ChatDep = Annotated[ChatService, Depends(get_ready_chat)]
DocumentsDep = Annotated["DocumentService", Depends(get_documents)]


def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


RequestIdDep = Annotated[str, Depends(request_id)]
