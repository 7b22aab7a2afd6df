"""Decoded images kept for a while, so the same bytes at the same pixel budget are decoded once.

An entry is keyed by the SHA-256 of the encoded bytes and everything else its decode depends on (the
target pixel budget and the per-image limits). The cache holds at most ``max_bytes`` of decoded pixels
and kept source bytes, evicting the least recently used entry first, and an entry lives ``ttl_s``
seconds from its decode. Decoding runs in worker threads, so the entries are kept under a lock (the decode
itself runs outside it); identical images decoded at the same time, in one request or across requests,
are decoded once and the other callers wait for that decode.

PIL images are mutable and not safe to share between threads (even ``save`` sets attributes on the
image), so the cached image is never handed out: every caller gets its own copy, a memory copy that
costs a fraction of the decode. Limits are checked by the caller from the header before the cache is
asked (see :class:`vlserve.media.sources.MediaLoader`), so a cached image never bypasses one. The loader
asks with :meth:`ImageCache.lookup` first and decodes a miss with :meth:`ImageCache.fill` under the server's
decode budget (:mod:`vlserve.media.decode_budget`); a hit costs a copy and takes none of it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

from vlserve.media.images import LoadedImage

Outcome = Literal["hit", "miss"]  # hit: decoded before, or by a concurrent caller for the same key
Key = tuple[bytes, Hashable]  # SHA-256 of the encoded bytes, and everything else the decode depends on
_SMALL_MODES = {"1": 1, "L": 1, "P": 1}  # bytes a pixel as PIL holds it; RGB and the rest take 4


@dataclass(frozen=True)
class _Entry:
    loaded: LoadedImage
    size: int  # bytes held: pixels as PIL stores them, plus the kept source bytes
    expires: float


def footprint(loaded: LoadedImage) -> int:
    """Bytes an entry holds: the decoded pixels (as PIL stores them) and the kept encoded bytes."""
    image = loaded.image
    pixels = image.width * image.height * _SMALL_MODES.get(image.mode, 4)
    return pixels + (len(loaded.source) if loaded.source is not None else 0)


def _handout(loaded: LoadedImage) -> LoadedImage:
    """The caller's own image (the cached one is never shared); bytes are immutable and shared as they are."""
    return LoadedImage(loaded.image.copy(), loaded.source, loaded.source_type)


class ImageCache:
    """A bounded, thread-safe LRU of decoded images with a time window; ``max_bytes`` 0 turns it off."""

    def __init__(
        self,
        max_bytes: int,
        ttl_s: float,
        *,
        on_lookup: Callable[[Outcome], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.on_lookup = on_lookup  # told every lookup's outcome (the metrics), from a worker thread
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()  # oldest use first
        self._pending: dict[Key, Future[LoadedImage]] = {}
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def held_bytes(self) -> int:
        """Bytes the entries hold now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, data: bytes, variant: Hashable, decode: Callable[[], LoadedImage]) -> LoadedImage:
        """The image ``decode`` makes of ``data``: from the cache when the same bytes were decoded with the
        same ``variant`` (everything else the result depends on) within the window, else decoded now.
        Errors from ``decode`` propagate and are not cached."""
        if not self.enabled:
            return decode()
        key, loaded = self.lookup(data, variant)
        return loaded if loaded is not None else self.fill(key, decode)

    def lookup(self, data: bytes, variant: Hashable) -> tuple[Key, LoadedImage | None]:
        """The key of ``data`` at ``variant``, and the caller's copy of its image when one is kept (a hit).
        On None nothing is reported: the caller decodes with :meth:`fill` (under the decode budget)."""
        key = (hashlib.sha256(data).digest(), variant)
        with self._lock:
            entry = self._fresh(key)
        if entry is None:
            return key, None
        self._report("hit")
        return key, _handout(entry.loaded)

    def fill(self, key: Key, decode: Callable[[], LoadedImage]) -> LoadedImage:
        """The image for ``key`` (from :meth:`lookup`): kept by now, being decoded by another caller (waited
        for), or decoded here with ``decode`` and kept."""
        if not self.enabled:
            return decode()
        with self._lock:
            entry = self._fresh(key)
            decoding = self._pending.get(key) if entry is None else None
            if entry is None and decoding is None:
                self._pending[key] = Future()
        if entry is not None:
            self._report("hit")
            return _handout(entry.loaded)
        if decoding is not None:
            return self._wait(decoding, decode)
        return self._decode(key, decode)

    def _wait(self, decoding: Future[LoadedImage], decode: Callable[[], LoadedImage]) -> LoadedImage:
        """The result of the same decode running in another thread (counted a hit)."""
        try:
            loaded = decoding.result()
        except Exception:  # it failed: decode here, so that the error names this caller's param
            self._report("miss")
            return decode()
        self._report("hit")
        return _handout(loaded)

    def _decode(self, key: Key, decode: Callable[[], LoadedImage]) -> LoadedImage:
        """Decode as the one caller for ``key``, keep the result, and hand it to the callers waiting for it."""
        self._report("miss")
        try:
            loaded = decode()
        except BaseException as exc:
            with self._lock:
                decoding = self._pending.pop(key)
            decoding.set_exception(exc)
            raise
        with self._lock:
            decoding = self._pending.pop(key)
            self._store(key, loaded)
        decoding.set_result(loaded)
        return _handout(loaded)

    def _report(self, outcome: Outcome) -> None:
        if self.on_lookup is not None:
            self.on_lookup(outcome)

    def _fresh(self, key: Key) -> _Entry | None:
        """The entry for ``key`` if it is still in its window (marked most recently used); lock held."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def _store(self, key: Key, loaded: LoadedImage) -> None:
        """Keep ``loaded``: expired entries go first, then the least recently used until it fits; lock held."""
        now = self._clock()
        for stale in [k for k, e in self._entries.items() if e.expires <= now]:
            self._drop(stale)
        size = footprint(loaded)
        if size > self.max_bytes:
            return  # larger than the whole cache: served, not kept
        while self._entries and self._bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[key] = _Entry(loaded, size, now + self.ttl_s)
        self._bytes += size

    def _drop(self, key: Key) -> None:
        self._bytes -= self._entries.pop(key).size
