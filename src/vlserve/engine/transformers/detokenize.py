"""Incremental detokenisation with stop strings, for streaming.

Byte-level BPE splits one character (a Chinese character, an emoji) over several tokens, so
text is only released once it decodes cleanly; text that might be the start of a stop string
is held back until it is known not to be one.

Stop strings work as vLLM's: the answer ends where the first stop string is completed (when several
complete at the same character, the one starting earliest, so the longest is cut); its text ends
before the stop string, or after it with ``include_stop_str_in_output`` (then nothing need be held
back, the stop string being part of the answer either way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT = "\ufffd"


class StreamDecoder:
    def __init__(
        self, decode: Callable[[list[int]], str], stop: Sequence[str] = (), *, include_stop: bool = False
    ) -> None:
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._include_stop = include_stop
        self._tokens: list[int] = []
        self._sent = 0
        self.stopped = False  # a stop string was found; the text ends before it (or after it, when included)

    @property
    def num_tokens(self) -> int:
        return len(self._tokens)

    def push(self, token_id: int) -> str:
        """Add one generated token; returns the newly releasable text (may be empty)."""
        self._tokens.append(token_id)
        text = self._decode(self._tokens)
        if text.endswith(REPLACEMENT):
            return ""
        found = self._find_stop(text)
        if found is not None:
            self.stopped = True
            start, end = found
            cut = end if self._include_stop else start
            return self._release(text, cut)
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

    def _find_stop(self, text: str) -> tuple[int, int] | None:
        """(start, end) of the stop string completed first in the text not yet released."""
        longest = max((len(s) for s in self._stop), default=0)
        begin = max(0, self._sent - longest)
        hits = [(i + len(s), i) for s in self._stop if (i := text.find(s, begin)) >= 0]
        if not hits:
            return None
        end, start = min(hits)
        return start, end

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string (none is held
        back when the stop string is to stay in the text)."""
        if self._include_stop:
            return 0
        best = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
