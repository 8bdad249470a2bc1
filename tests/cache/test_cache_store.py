"""MemoryResponseCache (LRU + TTL) and RedisResponseCache (real redis-server), and the factory."""

from __future__ import annotations

import asyncio
import time
import uuid

from inferline.cache import CacheConfig, MemoryResponseCache, ResponseCache, create_response_cache
from inferline.cache.redis import RedisResponseCache
from support import free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache = MemoryResponseCache(ttl_s=10, clock=clock)
    await cache.put("k", b'{"a":1}')
    clock.now += 9.9
    assert await cache.get("k") == b'{"a":1}'
    clock.now += 0.2
    assert await cache.get("k") is None
    assert len(cache) == 0


async def test_memory_evicts_the_least_recently_used_beyond_max_entries() -> None:
    cache = MemoryResponseCache(max_entries=3)
    for k in "abc":
        await cache.put(k, k.encode())
    assert await cache.get("a") == b"a"  # a is now the most recently used
    await cache.put("d", b"d")
    assert len(cache) == 3
    assert await cache.get("b") is None  # b was the least recently used
    assert [await cache.get(k) for k in "acd"] == [b"a", b"c", b"d"]
    assert cache.evictions_total == 1


async def test_memory_skips_responses_over_max_entry_bytes() -> None:
    cache = MemoryResponseCache(max_entry_bytes=10)
    await cache.put("big", b"x" * 11)
    assert await cache.get("big") is None


async def test_redis_round_trip_and_ttl(cache_redis_url: str) -> None:
    prefix = f"test-cache:{uuid.uuid4().hex[:8]}"
    # The TTL must outlast put + get on a busy machine; the sleep past it is an upper bound (Redis expires
    # by its own clock, to the millisecond), so the miss after it is certain.
    # (timeout_s 5: the round trip is under test, not the 0.1 s default a loaded machine can exceed.)
    cache = RedisResponseCache(cache_redis_url, key_prefix=prefix, ttl_s=1.0, timeout_s=5.0)
    other_replica = RedisResponseCache(cache_redis_url, key_prefix=prefix, ttl_s=1.0, timeout_s=5.0)
    try:
        body = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
        await cache.put("k1", body)
        assert await other_replica.get("k1") == body  # shared by every replica
        assert await cache.get("missing") is None
        await asyncio.sleep(1.1)
        assert await cache.get("k1") is None
        assert (cache.hits_total, other_replica.hits_total) == (0, 1)
    finally:
        await cache.aclose()
        await other_replica.aclose()


async def test_redis_down_is_a_fast_miss_never_an_error() -> None:
    # A long timeout: "fast" means the refused connection is a miss as it happens, not after the timeout.
    cache = RedisResponseCache(f"redis://127.0.0.1:{free_port()}/0", timeout_s=5.0)
    try:
        start = time.monotonic()
        assert await cache.get("k") is None
        await cache.put("k", b"{}")
        assert time.monotonic() - start < 2.5
        assert cache.errors_total == 2
    finally:
        await cache.aclose()


async def test_factory_builds_the_configured_cache(cache_redis_url: str) -> None:
    assert create_response_cache(CacheConfig()) is None  # disabled by default
    mem = create_response_cache(CacheConfig(enabled=True, max_entries=5))
    assert isinstance(mem, MemoryResponseCache) and isinstance(mem, ResponseCache)
    red = create_response_cache(CacheConfig(enabled=True, store="redis", redis_url=cache_redis_url))
    assert isinstance(red, RedisResponseCache)
    await red.aclose()
