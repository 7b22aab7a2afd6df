"""Whether Redis answers, as its users (the rate limiter, the response cache) last found it.

Each user reports every operation's outcome; ``vlserve_redis_up`` shows the latest one, so it drops to 0
at the first failure and comes back with the first success, whichever user saw it.
"""

from __future__ import annotations


class RedisHealth:
    def __init__(self) -> None:
        self.up = True  # a server starts only once Redis has answered (the rate limiter's check)

    def report(self, ok: bool) -> None:
        self.up = ok
