"""RedisLimitStore beyond the shared contract: store failures, script cache, key expiry, restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis import asyncio as aioredis

from inferline.limits import Denial, KeyLimits, LimitStoreUnavailable, Reservation
from inferline.limits.redis import RedisLimitStore
from support import free_port, start_redis, stop_redis

LIMITS = KeyLimits(requests_per_minute=100, tokens_per_minute=10_000, max_concurrent=10, tokens_per_day=10**6)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_store_down_raises_limit_store_unavailable_promptly() -> None:
    # Nothing listens there. A long timeout: "promptly" means the refusal is reported as it happens,
    # not after waiting out the timeout (a generous bound, far below it, holds on a busy machine).
    store = RedisLimitStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=5.0)
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.reserve("k", LIMITS, 10),
            lambda: store.reconcile(Reservation("x", "k", 10), 5),
            store.check,
        ]
        for call in calls:
            start = time.monotonic()
            with pytest.raises(LimitStoreUnavailable, match=r"redis limit store at 127\.0\.0\.1:\d+/0: Connection"):
                await call()
            assert time.monotonic() - start < 2.5
    finally:
        await store.aclose()


async def test_a_store_that_accepts_but_never_answers_times_out_within_the_bound() -> None:
    held: list[asyncio.StreamWriter] = []

    async def blackhole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(blackhole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisLimitStore(f"redis://127.0.0.1:{port}/0", timeout_s=1.0)
    try:
        start = time.monotonic()
        with pytest.raises(LimitStoreUnavailable, match="TimeoutError"):
            await store.reserve("k", LIMITS, 10)
        elapsed = time.monotonic() - start
        # Bounded by timeout_s (never a hang; the lower bound shows it waited for the answer), with
        # headroom for a loaded machine.
        assert 0.9 < elapsed < 6.0
    finally:
        await store.aclose()
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_scripts_are_reloaded_after_the_server_forgets_them(
    redis_url: str, key_prefix: str, raw: aioredis.Redis
) -> None:
    store = RedisLimitStore(redis_url, key_prefix=key_prefix)
    try:
        r = await store.reserve("k", LIMITS, 10)
        assert isinstance(r, Reservation)
        await raw.script_flush()
        assert await store.reconcile(r, 5) is True  # NOSCRIPT -> SCRIPT LOAD -> EVALSHA
        assert isinstance(await store.reserve("k", LIMITS, 10), Reservation)
    finally:
        await store.aclose()


async def test_every_key_written_expires(redis_url: str, key_prefix: str, raw: aioredis.Redis) -> None:
    store = RedisLimitStore(redis_url, key_prefix=key_prefix, concurrency_lease_s=900)
    try:
        limits = KeyLimits(requests_per_minute=5, tokens_per_minute=100, tokens_per_day=1000, tokens_per_month=10**4)
        r = await store.reserve("team-a", limits, 50)
        assert isinstance(r, Reservation)
        await store.reconcile(r, 20)
        await store.reserve("team-a", limits, 10)
        keys = sorted(k.decode() if isinstance(k, bytes) else k for k in await raw.keys(f"{key_prefix}:*"))
        suffixes = [k.split("}:", 1)[1] for k in keys]
        assert sorted(s.split(":")[0] for s in suffixes) == ["amt", "conc", "d", "log", "m"]
        assert all(k.startswith(f"{key_prefix}:{{team-a}}:") for k in keys)  # one hash tag: one cluster slot
        for k in keys:
            ttl_ms = await raw.pttl(k)
            assert 0 < ttl_ms <= 33 * 86_400_000, (k, ttl_ms)
        assert await raw.pttl(f"{key_prefix}:{{team-a}}:log") <= 60_000
    finally:
        await store.aclose()


async def test_replicas_use_the_server_clock_not_their_own(redis_url: str, key_prefix: str) -> None:
    """Without `now`, windows are timed by Redis TIME: a replica's skewed clock cannot widen them."""
    a = RedisLimitStore(redis_url, key_prefix=key_prefix)
    b = RedisLimitStore(redis_url, key_prefix=key_prefix)
    try:
        limits = KeyLimits(requests_per_minute=2)
        assert isinstance(await a.reserve("k", limits, 1), Reservation)
        assert isinstance(await b.reserve("k", limits, 1), Reservation)
        d = await a.reserve("k", limits, 1)
        assert not isinstance(d, Reservation)
        assert 59 < (d.retry_after_s or 0) <= 60
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_redis_restart_costs_no_failed_request(key_prefix: str) -> None:
    """Pooled connections die with the server; the one immediate retry on a fresh connection hides it."""
    url, port = start_redis()
    store = RedisLimitStore(url, key_prefix=key_prefix)
    try:
        assert isinstance(await store.reserve("k", LIMITS, 1), Reservation)
        stop_redis(port)
        with pytest.raises(LimitStoreUnavailable):
            await store.reserve("k", LIMITS, 1)
        assert start_redis(port) == (url, port)
        assert isinstance(await store.reserve("k", LIMITS, 1), Reservation)
    finally:
        await store.aclose()
        stop_redis(port)


async def test_the_url_password_never_shows() -> None:
    store = RedisLimitStore("redis://user:s3cret@127.0.0.1:1/0")
    try:
        assert repr(store) == "RedisLimitStore(127.0.0.1:1/0, prefix='inferline:limits')"
        with pytest.raises(LimitStoreUnavailable) as info:
            await store.check()
        assert "s3cret" not in str(info.value)
    finally:
        await store.aclose()


async def test_lua_calendar_months_match_python_for_any_day(redis_url: str, key_prefix: str) -> None:
    """reserve.lua computes UTC months itself (days-from-civil); Python's datetime is the reference."""
    import random

    from inferline.limits.base import utc_month

    rng = random.Random(7)
    store = RedisLimitStore(redis_url, key_prefix=key_prefix)
    try:
        limits = KeyLimits(tokens_per_month=1)
        for i in range(150):
            day = rng.randrange(0, 60_000)  # 1970 .. 2134
            now = day * 86400 + rng.randrange(0, 86400)
            month, next_month_ms = utc_month(day)
            r = await store.reserve(f"k{i}", limits, 1, now=now)
            assert isinstance(r, Reservation) and r.month == month, (day, r)
            d = await store.reserve(f"k{i}", limits, 1, now=now)
            assert isinstance(d, Denial) and d.retry_after_s == next_month_ms / 1000 - now, (day, d)
    finally:
        await store.aclose()
