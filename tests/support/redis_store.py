"""The local Redis for tests (127.0.0.1:6379): a key prefix of its own per test, deleted afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("VLSERVE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the local Redis for one test; every key under it is deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis is not running on 127.0.0.1:6379 ({type(exc).__name__})")
    prefix = f"vlserve-test:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.delete(key)
        client.close()
