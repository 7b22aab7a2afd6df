"""Incremental detokenisation with stop strings, for streaming.

Byte-level BPE splits one character (a Chinese character, an emoji) over several tokens, so
text is only released once it decodes cleanly; text that might be the start of a stop string
is held back until it is known not to be one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT = "\ufffd"


class StreamDecoder:
    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._tokens: list[int] = []
        self._sent = 0
        self.stopped = False  # a stop string was found; the text ends before it

    @property
    def num_tokens(self) -> int:
        return len(self._tokens)

    def push(self, token_id: int) -> str:
        """Add one generated token; returns the newly releasable text (may be empty)."""
        self._tokens.append(token_id)
        text = self._decode(self._tokens)
        if text.endswith(REPLACEMENT):
            return ""
        cut = self._find_stop(text)
        if cut is not None:
            self.stopped = True
            return self._release(text[:cut], len(text[:cut]))
        return self._release(text, len(text) - self._held_back(text))

    def flush(self) -> str:
        """Release whatever is held back once generation has ended without a stop string."""
        if self.stopped:
            return ""
        text = self._decode(self._tokens).rstrip(REPLACEMENT)
        return self._release(text, len(text))

    def _release(self, text: str, upto: int) -> str:
        if upto <= self._sent:
            return ""
        piece = text[self._sent : upto]
        self._sent = upto
        return piece

    def _find_stop(self, text: str) -> int | None:
        longest = max((len(s) for s in self._stop), default=0)
        start = max(0, self._sent - longest)
        hits = [i for i in (text.find(s, start) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
