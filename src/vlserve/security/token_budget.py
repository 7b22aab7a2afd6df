"""A request's (or a document page's) share of its key's tokens per day, reserved before each generation.

Counting tokens only when answers end would let requests running at once each find the budget unspent and
together spend it many times over. So before the engine does any work for a generation, the generation
service reserves its worst case (:func:`reserve_generation`: the prompt's tokens, exact or an upper bound,
plus the most it may generate) with the key's limiter, which refuses it with a 429 when today's used and
reserved tokens already reach the budget. When the generation ends, its reservation is dropped and the
tokens it really used (read from the request's RequestRecord) are counted, in one step; what is still
reserved or uncounted when the request ends is settled then. The budget is thus never exceeded by more than
one generation's reservation.

QuotaMiddleware opens a :class:`TokenBudget` for each request of a key with a token budget that may spend
tokens, OwnerQuota one for each document page; a generation outside both (no budget, auth off) reserves
nothing.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

import anyio

from vlserve.engine.base import Prepared, SamplingParams
from vlserve.errors import RateLimitError
from vlserve.observability.accounting import RequestRecord
from vlserve.security.principal import Principal
from vlserve.security.ratelimit import Limiter, Reservation, TokensInFlightError

T = TypeVar("T")


class TokenBudget:
    """The tokens per day of ``principal`` as spent by one request or page, whose usage ``record`` collects.

    ``in_flight_is_busy``: a generation refused only because the key's work in progress has reserved the rest
    of the budget raises RateLimitError (the document worker puts the page back and tries it later) instead
    of TokensInFlightError (a client's 429)."""

    def __init__(
        self, limiter: Limiter, principal: Principal, record: RequestRecord, *, in_flight_is_busy: bool = False
    ) -> None:
        self._limiter = limiter
        self._principal = principal
        self._record = record
        self._in_flight_is_busy = in_flight_is_busy
        self._pending: dict[str, Reservation] = {}
        self._charged = 0  # of the record's tokens, those already counted with the limiter
        self._closed = False

    async def reserve(self, tokens: int) -> Reservation:
        """Set ``tokens`` aside for a generation about to start; QuotaExceededError (or RateLimitError, see
        above) when today's used and reserved tokens already reach the budget."""
        try:
            reservation = await self._limiter.reserve(self._principal, tokens)
        except TokensInFlightError as exc:
            if self._in_flight_is_busy:
                raise RateLimitError(exc.message, headers=exc.headers) from None
            raise
        self._pending[reservation.reservation_id] = reservation
        if self._closed:  # the request ended while this was being reserved
            await self.settle(reservation)
        return reservation

    async def settle(self, reservation: Reservation) -> None:
        """Drop ``reservation`` and count the tokens noted since the last settlement (once; later calls do
        nothing). Finished even when the caller is being cancelled."""
        if self._pending.pop(reservation.reservation_id, None) is None:
            return
        used = self._uncharged()
        with anyio.CancelScope(shield=True):
            await self._limiter.settle(reservation, used)

    async def close(self) -> None:
        """The request or page ended: settle what is still reserved, and count every token not counted yet."""
        self._closed = True
        pending = list(self._pending.values())
        self._pending.clear()
        used = self._uncharged()
        with anyio.CancelScope(shield=True):
            for reservation in pending:
                await self._limiter.settle(reservation, used)
                used = 0
            if used > 0:
                await self._limiter.charge(self._principal, used)

    def _uncharged(self) -> int:
        total = self._record.total_tokens
        used, self._charged = max(0, total - self._charged), max(total, self._charged)
        return used

    async def held_during(self, reservation: Reservation, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """``items`` (a generation's deltas), settling ``reservation`` once they end, fail or are closed."""
        try:
            async for item in items:
                yield item
        finally:
            try:
                aclose = getattr(items, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                await self.settle(reservation)


current_budget: contextvars.ContextVar[TokenBudget | None] = contextvars.ContextVar("token_budget", default=None)


@dataclass(frozen=True)
class Held:
    """One generation's reservation in the budget that made it."""

    budget: TokenBudget
    reservation: Reservation

    async def settle(self) -> None:
        await self.budget.settle(self.reservation)

    def during(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """``items``, the reservation settled once they end (after the usage of their last one is noted)."""
        return self.budget.held_during(self.reservation, items)


def worst_case(
    prompt_tokens: int, max_tokens: int | None, *, default_max_tokens: int | None, max_model_len: int
) -> int:
    """The most tokens a generation may use: its prompt and the completion limit it asked for, else the server's
    default (None: none is known), never more than the context (``max_model_len``; 0: not known) leaves."""
    completion = max_tokens if max_tokens is not None else default_max_tokens
    room = max_model_len - prompt_tokens if max_model_len > 0 else None
    if completion is None:
        completion = room or 0
    elif room is not None:
        completion = min(completion, room)
    return prompt_tokens + max(0, completion)


async def reserve_generation(
    prepared: Prepared, params: SamplingParams, *, default_max_tokens: int | None, max_model_len: int
) -> Held | None:
    """Reserve the worst case of generating ``prepared`` with ``params`` in the current request's or page's
    budget (None: no budget counts it); QuotaExceededError (429) when the budget is spent or reserved."""
    budget = current_budget.get()
    if budget is None:
        return None
    tokens = worst_case(
        prepared.num_tokens, params.max_tokens, default_max_tokens=default_max_tokens, max_model_len=max_model_len
    )
    return Held(budget, await budget.reserve(tokens))
