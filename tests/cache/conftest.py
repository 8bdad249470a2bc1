"""A real redis-server for the cache tests (the same scripts/redis.sh helper as tests/limits)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import start_redis, stop_redis


@pytest.fixture(scope="session")
def cache_redis_url() -> Iterator[str]:
    url, port = start_redis()
    yield url
    stop_redis(port)
