"""The in-process backend (bounded LRU with a TTL) and the entry format every backend stores."""

from __future__ import annotations

import asyncio

import pytest

from vlserve.cache import entry
from vlserve.cache.memory import MemoryStore
from vlserve.engine.base import Delta, TokenLogprob, ToolCallDelta, Usage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_least_recently_used_entries_go_first_when_over_the_entry_bound() -> None:
    async def main() -> None:
        store = MemoryStore(max_entries=2, max_bytes=1_000, ttl_s=60)
        await store.set("a", b"1")
        await store.set("b", b"2")
        assert await store.get("a") == b"1"  # a is now the most recently used
        await store.set("c", b"3")
        assert (await store.get("a"), await store.get("b"), await store.get("c")) == (b"1", None, b"3")
        assert store.entries == 2

    run(main())


def test_the_byte_bound_evicts_and_a_value_larger_than_the_cache_is_not_kept() -> None:
    async def main() -> None:
        store = MemoryStore(max_entries=100, max_bytes=10, ttl_s=60)
        await store.set("a", b"x" * 4)
        await store.set("b", b"x" * 4)
        await store.set("c", b"x" * 4)  # 12 bytes > 10: a goes
        assert await store.get("a") is None and store.bytes == 8 and store.entries == 2
        await store.set("huge", b"x" * 11)
        assert await store.get("huge") is None and store.bytes == 8
        await store.set("b", b"y")  # replacing counts the new size only
        assert store.bytes == 5

    run(main())


def test_entries_expire_after_the_ttl() -> None:
    async def main() -> None:
        clock = Clock()
        store = MemoryStore(max_entries=10, max_bytes=1_000, ttl_s=30, clock=clock)
        await store.set("a", b"1")
        clock.now += 29.9
        assert await store.get("a") == b"1"
        clock.now += 0.2
        assert await store.get("a") is None
        assert store.entries == 0 and store.bytes == 0

    run(main())


def test_an_entry_round_trips_every_field_of_every_delta() -> None:
    top = TokenLogprob("b", -2.5, (98,))
    deltas = (
        Delta("Hé", token_ids=(1, 2), logprobs=(TokenLogprob("H", -0.125, (72,), (top,)), TokenLogprob("é", -1e-9))),
        Delta("", tool_calls=(ToolCallDelta(0, "call_1", "lookup", '{"q"'),)),
        Delta("", tool_calls=(ToolCallDelta(0, arguments=': "a"}'),)),
        Delta("!", "tool_calls", (3,), Usage(12, 3, 10)),
    )
    data = entry.encode(deltas)
    assert entry.decode(data) == deltas


@pytest.mark.parametrize("data", [b"", b"{}", b"[1]", b'{"v": 99, "d": []}', b'{"v": 1, "d": [{"t": "x"}]}', b"\xff"])
def test_anything_else_is_refused_as_an_entry(data: bytes) -> None:
    with pytest.raises(ValueError):
        entry.decode(data)
