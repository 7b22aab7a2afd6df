"""Who is calling: the API key a request was authenticated with, as the auth middleware leaves it."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

SCOPES = ("chat", "documents", "metrics", "admin")
DEFAULT_SCOPES = ("chat", "documents")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]
    requests_per_minute: int = 0  # 0: no limit (the key's own, else the server's default)
    concurrent_requests: int = 0
    tokens_per_day: int = 0

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def principal_of(scope: Scope) -> Principal | None:
    """The authenticated key of a request; None when auth is off (everyone is the same anonymous caller)."""
    return scope.get("state", {}).get("principal")
