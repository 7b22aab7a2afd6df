"""Where the per-key limits are enforced: every API request (QuotaMiddleware) and every document page.

QuotaMiddleware runs inside the auth middleware, which leaves the request's key in
``scope["state"]["principal"]``. A request of a key with limits is admitted by the runtime's limiter or
answered at once with its 429 (or 503 when the limits cannot be kept). An admitted request carries the
``x-ratelimit-*`` headers, and when its response has ended (the last byte of a stream, or the client gone)
its slot is freed and the tokens its answer used (the request's RequestRecord) are counted. Only POST
requests (inference, document submission) spend tokens, so only they are refused once the day's tokens are
spent or reserved: a key can still read its results. A POST of a key with a token budget also gets a
TokenBudget, in which each of its generations reserves its worst case before it starts (``token_budget``).
With auth off there is no key and nothing is limited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlserve.errors import RateLimitError, VLServeError, error_body
from vlserve.observability.accounting import RequestRecord, current_record
from vlserve.security.principal import Principal, principal_of
from vlserve.security.ratelimit import Limiter, TokensInFlightError, has_limits
from vlserve.security.token_budget import TokenBudget, current_budget


class QuotaMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = principal_of(scope) if scope["type"] == "http" else None
        runtime = getattr(scope["app"].state, "vlserve", None) if has_limits(principal) else None
        if principal is None or runtime is None:
            await self.app(scope, receive, send)
            return
        limiter: Limiter = runtime.limiter
        spends_tokens = scope["method"] == "POST"
        try:
            lease = await limiter.acquire(principal, spends_tokens=spends_tokens)
        except VLServeError as exc:
            await JSONResponse(error_body(exc), status_code=exc.status_code, headers=exc.headers)(scope, receive, send)
            return
        record = current_record.get()
        token = None
        if record is None:  # no audit record to read the tokens from: keep one for this request
            record = RequestRecord()
            token = current_record.set(record)
        budget = TokenBudget(limiter, principal, record) if spends_tokens and principal.tokens_per_day > 0 else None
        budget_token = current_budget.set(budget)
        extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in lease.headers.items()]

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":  # a refusal inside (a reservation) has newer counts
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                message["headers"] = [*headers, *(pair for pair in extra if pair[0] not in names)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        finally:
            current_budget.reset(budget_token)
            with anyio.CancelScope(shield=True):  # a request cancelled mid-way still frees its slot
                if budget is not None:  # its reservations settled, its tokens counted
                    await budget.close()
                await limiter.release(lease, 0 if budget is not None else record.total_tokens)
            if token is not None:
                current_record.reset(token)


class OwnerQuota:
    """The daily token budget of a document job's owner, for the pages the document worker reads.

    A page is checked before it is read: an owner that has spent today's tokens gets the page failed with
    the 429's message, not retried (the budget will not come back for hours); one whose pages in progress
    have reserved the rest gets a RateLimitError, so the worker puts the page back and tries it later. Each
    attempt at the page reserves its worst case in the page's TokenBudget, and the tokens are counted after."""

    def __init__(self, limiter: Limiter, lookup: Callable[[str], Principal | None]) -> None:
        self._limiter = limiter
        self._lookup = lookup  # key id -> its Principal with limits resolved (KeyStore.principal)

    async def admit(self, owner: str | None) -> Principal | None:
        """The owner's Principal when it has a token budget (None: nothing to count); raises
        QuotaExceededError when today's is spent, RateLimitError when it is reserved by pages in progress."""
        if owner is None:
            return None
        principal = await asyncio.to_thread(self._lookup, owner)
        if principal is None or principal.tokens_per_day <= 0:
            return None
        try:
            await self._limiter.check_tokens(principal)
        except TokensInFlightError as exc:
            raise RateLimitError(exc.message, headers=exc.headers) from None
        return principal

    @contextlib.asynccontextmanager
    async def page(self, owner: str | None) -> AsyncIterator[None]:
        """Around the reading of one page of ``owner``'s job: refused (see :meth:`admit`) when its tokens for
        today are spent or reserved; each attempt inside reserves its worst case, and the tokens the engine
        reports (every attempt) are counted to the owner."""
        principal = await self.admit(owner)
        record = current_record.get() or RequestRecord()  # the worker's record of the page, if it keeps one
        token = current_record.set(record)
        budget = None if principal is None else TokenBudget(self._limiter, principal, record, in_flight_is_busy=True)
        budget_token = current_budget.set(budget)
        try:
            yield
        finally:
            current_budget.reset(budget_token)
            current_record.reset(token)
            if budget is not None:
                await budget.close()
