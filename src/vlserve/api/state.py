"""What the routers reach through ``app.state``: typed, built once per app in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from vlserve.api.chat_service import ChatService
from vlserve.engine.base import Engine
from vlserve.errors import ServiceUnavailableError
from vlserve.settings import Settings


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    chat: ChatService
    load_error: str | None = None


def get_state(request: Request) -> AppState:
    return request.app.state.vlserve


def get_ready_chat(request: Request) -> ChatService:
    state = get_state(request)
    if not state.engine.ready:
        reason = "the model failed to load" if state.load_error else "the model is still loading"
        raise ServiceUnavailableError(f"{reason}; retry shortly", headers={"Retry-After": "5"})
    return state.chat


StateDep = Annotated[AppState, Depends(get_state)]
ChatDep = Annotated[ChatService, Depends(get_ready_chat)]


def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


RequestIdDep = Annotated[str, Depends(request_id)]
