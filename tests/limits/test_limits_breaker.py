"""The circuit breaker around Redis: opens after N failures, skips the store at once, one trial, recovery.

Unit tests drive StoreBreaker with a fake clock; the store tests stop and restart a real redis-server.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from inferline.cache.redis import RedisResponseCache
from inferline.errors import StoreUnavailable
from inferline.limits import KeyLimits, Limiter, LimitsConfig, LimitStoreUnavailable, MemoryLimitStore, Reservation
from inferline.limits.breaker import BreakerOpen, CircuitState, StoreBreaker
from inferline.limits.keyring import KeyRing
from inferline.limits.redis import RedisLimitStore
from inferline.limits.store_metrics import register_store_metrics
from support import free_port, start_redis, stop_redis

LIMITS = KeyLimits(requests_per_minute=1000, max_concurrent=100)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, threshold: int = 3, cooldown_s: float = 5.0) -> StoreBreaker:
    return StoreBreaker("limits", "127.0.0.1:1/0", failure_threshold=threshold, cooldown_s=cooldown_s, clock=clock)


def test_opens_after_threshold_consecutive_failures_and_skips_until_the_cooldown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    b = _breaker(clock)
    with caplog.at_level(logging.INFO, logger="inferline.limits"):
        for _ in range(2):
            b.acquire()
            b.failure(ConnectionError("refused"))
        assert b.state is CircuitState.CLOSED and not b.up  # failing, not yet open
        b.acquire()
        b.failure(ConnectionError("refused"))
    assert b.state is CircuitState.OPEN
    assert "circuit closed -> open: 3 consecutive failures (last: ConnectionError: refused)" in caplog.text
    clock.now += 4.0
    with pytest.raises(BreakerOpen) as skipped:
        b.acquire()
    assert skipped.value.retry_after_s == pytest.approx(1.0)
    assert b.retry_after_s() == 1.0 and b.skipped_total == 1 and b.errors_total == 3


def test_a_success_resets_the_count() -> None:
    b = _breaker(Clock())
    for _ in range(5):
        b.acquire()
        b.failure(TimeoutError())
        b.acquire()
        b.success()
    assert b.state is CircuitState.CLOSED and b.up and b.errors_total == 5


def test_half_open_lets_one_trial_through_then_closes_or_reopens(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    b = _breaker(clock, threshold=1, cooldown_s=2.0)
    b.acquire()
    b.failure(TimeoutError())
    assert b.state is CircuitState.OPEN
    clock.now += 2.0
    b.acquire()  # the trial
    assert b.state is CircuitState.HALF_OPEN
    with pytest.raises(BreakerOpen):
        b.acquire()  # one trial at a time
    b.failure(TimeoutError())  # the trial failed: open again, a fresh cool-down
    assert b.state is CircuitState.OPEN
    with pytest.raises(BreakerOpen):
        b.acquire()
    clock.now += 2.0
    b.acquire()
    with caplog.at_level(logging.INFO, logger="inferline.limits"):
        b.success()
    assert b.state is CircuitState.CLOSED and b.up
    assert "circuit half-open -> closed: the store answers again (down for 4.0 s)" in caplog.text
    assert [s for _, s in b.transitions] == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    ]


def test_a_cancelled_trial_frees_the_half_open_slot() -> None:
    clock = Clock()
    b = _breaker(clock, threshold=1, cooldown_s=1.0)
    b.acquire()
    b.failure(TimeoutError())
    clock.now += 1.0
    b.acquire()
    b.abandon()
    b.acquire()  # the next caller may try
    assert b.state is CircuitState.HALF_OPEN


async def test_redis_down_costs_one_timeout_per_cooldown_not_one_per_request() -> None:
    """Against a port where nothing listens: after the threshold, calls fail without touching Redis."""
    store = RedisLimitStore(f"redis://127.0.0.1:{free_port()}/0", failure_threshold=3, cooldown_s=60)
    try:
        for _ in range(3):
            with pytest.raises(LimitStoreUnavailable, match="Connection"):
                await store.reserve("k", LIMITS, 1)
        assert store.breaker.state is CircuitState.OPEN
        for _ in range(50):
            with pytest.raises(LimitStoreUnavailable, match="being skipped") as info:
                await store.reserve("k", LIMITS, 1)
        assert info.value.retry_after_s is not None and 50 < info.value.retry_after_s <= 60
        assert store.breaker.errors_total == 3 and store.breaker.skipped_total == 50
    finally:
        await store.aclose()


async def test_fail_closed_503_carries_the_cooldown_as_retry_after() -> None:
    store = RedisLimitStore(f"redis://127.0.0.1:{free_port()}/0", failure_threshold=1, cooldown_s=30)
    lim = Limiter(LimitsConfig(), store, KeyRing([]))
    principal = lim.authenticate(None)
    try:
        with pytest.raises(StoreUnavailable):
            await lim.admit_limits(principal.name, LIMITS, 1)
        with pytest.raises(StoreUnavailable) as info:
            await lim.admit_limits(principal.name, LIMITS, 1)
        assert info.value.status == 503 and info.value.code == "store_unavailable"
        assert info.value.retry_after_s is not None and 20 < info.value.retry_after_s <= 30
    finally:
        await lim.aclose()


async def test_real_redis_outage_opens_then_recovers_and_limits_are_exact_again(key_prefix: str) -> None:
    """Stop a real redis-server: the breaker opens; restart it: one trial closes it, counting resumes."""
    url, port = start_redis()
    store = RedisLimitStore(url, key_prefix=key_prefix, failure_threshold=2, cooldown_s=0.5, timeout_s=1.0)
    limits = KeyLimits(requests_per_minute=5)
    try:
        for _ in range(2):
            assert isinstance(await store.reserve("k", limits, 1), Reservation)
        stop_redis(port)
        for _ in range(2):
            with pytest.raises(LimitStoreUnavailable):
                await store.reserve("k", limits, 1)
        assert store.breaker.state is CircuitState.OPEN
        with pytest.raises(LimitStoreUnavailable, match="being skipped"):
            await store.reserve("k", limits, 1)
        start_redis(port)  # no persistence: the minute window starts empty again
        deadline = time.monotonic() + 30
        while True:  # after the cool-down, the next call is the trial; it closes the circuit
            try:
                first = await store.reserve("k", limits, 1)
                break
            except LimitStoreUnavailable:
                assert time.monotonic() < deadline, "the breaker never let a trial through to the restarted Redis"
                await asyncio.sleep(0.05)
        assert isinstance(first, Reservation) and store.breaker.state is CircuitState.CLOSED and store.breaker.up
        results = [await store.reserve("k", limits, 1) for _ in range(5)]
        # exactly requests_per_minute admitted in the new window: 1 (the trial) + 4, then a denial
        assert [isinstance(r, Reservation) for r in results] == [True] * 4 + [False]
    finally:
        await store.aclose()
        stop_redis(port)


async def test_cache_outage_is_an_immediate_miss_once_open() -> None:
    cache = RedisResponseCache(f"redis://127.0.0.1:{free_port()}/0", failure_threshold=2, cooldown_s=60)
    try:
        for _ in range(2):
            assert await cache.get("k") is None
        assert cache.breaker.state is CircuitState.OPEN
        for _ in range(20):
            assert await cache.get("k") is None
            await cache.put("k", b"{}")
        assert cache.errors_total == 2 and cache.skipped_total == 40 and cache.misses_total == 22
    finally:
        await cache.aclose()


async def test_store_metrics_report_up_state_and_errors() -> None:
    registry = CollectorRegistry()
    down = RedisLimitStore(f"redis://127.0.0.1:{free_port()}/0", failure_threshold=1, cooldown_s=60)
    register_store_metrics(registry, down, MemoryLimitStore())
    try:
        with pytest.raises(LimitStoreUnavailable):
            await down.reserve("k", LIMITS, 1)
        text = generate_latest(registry).decode()
        assert 'inferline_limit_store_up{store="limits"} 0.0' in text
        assert 'inferline_limit_store_circuit_state{store="limits"} 2.0' in text
        assert 'inferline_limit_store_errors_total{store="limits"} 1.0' in text
        assert 'inferline_limit_store_up{store="cache"} 1.0' in text  # a memory store is always up
        assert 'inferline_limit_store_circuit_state{store="cache"} 0.0' in text
    finally:
        await down.aclose()
