"""Measure reserve+reconcile latency of the limit stores (not a test: run it by hand, numbers in docs/limits.md).

    .venv/bin/python tests/limits/measure_latency.py [REDIS_URL]

Without REDIS_URL it starts a throwaway redis-server with scripts/redis.sh. Prints µs per operation.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from redis import asyncio as aioredis

from inferline.cache import cache_key
from inferline.limits import KeyLimits, KeyRing, LimitStore, MemoryLimitStore, Reservation, hash_api_key
from inferline.limits.config import ApiKeyConfig
from inferline.limits.redis import RedisLimitStore

LIMITS = KeyLimits(
    requests_per_minute=10**9, tokens_per_minute=10**12, max_concurrent=10**6, tokens_per_day=10**15,
    tokens_per_month=10**15,
)  # fmt: skip
REDIS_SH = Path(__file__).resolve().parents[2] / "scripts" / "redis.sh"


async def sequential(store: LimitStore, n: int) -> list[float]:
    samples = []
    for i in range(n):
        t = time.perf_counter_ns()
        r = await store.reserve(f"k{i % 8}", LIMITS, 500)
        assert isinstance(r, Reservation)
        await store.reconcile(r, 200)
        samples.append((time.perf_counter_ns() - t) / 1000)
    return samples


async def concurrent(store: LimitStore, tasks: int, per_task: int) -> float:
    async def one() -> None:
        for i in range(per_task):
            r = await store.reserve(f"k{i % 8}", LIMITS, 500)
            assert isinstance(r, Reservation)
            await store.reconcile(r, 200)

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    return tasks * per_task / (time.perf_counter() - t)


def show(name: str, samples: list[float]) -> None:
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99)]
    print(f"{name:<44} p50 {p50:8.1f} µs   p99 {p99:8.1f} µs   (n={len(samples)})")


async def measure(url: str) -> None:
    mem = MemoryLimitStore()
    await sequential(mem, 2000)
    show("memory reserve+reconcile", await sequential(mem, 20000))
    red = RedisLimitStore(url, key_prefix="bench")
    await sequential(red, 500)
    raw = aioredis.Redis.from_url(url)
    await raw.config_resetstat()
    show("redis reserve+reconcile (2 EVALSHA)", await sequential(red, 5000))
    print(f"{'redis pairs/s, 32 concurrent tasks':<44} {await concurrent(red, 32, 200):8.0f} /s")
    stats = await raw.info("commandstats")
    evalsha = stats["cmdstat_evalsha"]
    print(f"{'redis server time per EVALSHA (commandstats)':<44} {evalsha['usec_per_call']:8.1f} µs")
    await raw.aclose()
    await red.aclose()
    for n_keys in (10, 1000):
        ring = KeyRing([ApiKeyConfig(name=f"k{i}", sha256=hash_api_key(f"key-{i}")) for i in range(n_keys)])
        t = time.perf_counter_ns()
        for _ in range(2000):
            ring.lookup(b"key-3")
        print(f"{f'KeyRing.lookup, {n_keys} keys':<44} {(time.perf_counter_ns() - t) / 2000 / 1000:8.1f} µs")
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hello " * 200}], "temperature": 0}
    t = time.perf_counter_ns()
    for _ in range(5000):
        cache_key(body, "chat")
    print(f"{'cache_key, 1.2 KB chat body':<44} {(time.perf_counter_ns() - t) / 5000 / 1000:8.1f} µs")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(measure(sys.argv[1]))
        return
    port = 6390
    subprocess.run([str(REDIS_SH), "start", str(port)], check=True, capture_output=True)
    try:
        asyncio.run(measure(f"redis://127.0.0.1:{port}/0"))
    finally:
        subprocess.run([str(REDIS_SH), "stop", str(port)], check=True, capture_output=True)


if __name__ == "__main__":
    main()
