"""A real redis-server for the session (scripts/redis.sh on a free port), and stores over it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from inferline.limits import LimitStore, MemoryLimitStore
from support import start_redis, stop_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, port = start_redis()
    yield url
    stop_redis(port)


@pytest.fixture
def key_prefix() -> str:
    """A fresh key prefix per test: tests share one Redis but never each other's counters."""
    return f"test:{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[LimitStore]:
    """Each contract test runs against both stores; the Redis one only starts Redis when needed."""
    s: LimitStore
    if request.param == "memory":
        s = MemoryLimitStore(concurrency_lease_s=120)
    else:
        from inferline.limits.redis import RedisLimitStore

        url = request.getfixturevalue("redis_url")
        s = RedisLimitStore(url, key_prefix=key_prefix, concurrency_lease_s=120, timeout_s=2)
    yield s
    await s.aclose()
