"""One gateway replica's traffic for test_limits_replicas.py: hammer a shared RedisLimitStore, print a JSON tally.

    python replica_worker.py REDIS_URL PREFIX REPLICAS SPECS_JSON

SPECS_JSON: [{"key", "rpm", "tpm", "attempts", "concurrency", "seed"}]. Every admitted request holds its
reservation for up to 5 ms, then reconciles with half the reserved tokens (the rest is refunded).
The replicas wait for each other at a barrier in Redis, so their traffic really overlaps.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

from redis import asyncio as aioredis

from inferline.limits import Denial, KeyLimits, Reservation
from inferline.limits.redis import RedisLimitStore


async def run_key(store: RedisLimitStore, spec: dict[str, Any]) -> dict[str, Any]:
    limits = KeyLimits(requests_per_minute=spec["rpm"], tokens_per_minute=spec["tpm"])
    rng = random.Random(spec["seed"])
    attempts = iter(range(spec["attempts"]))
    tally: dict[str, Any] = {"admitted": 0, "reserved": 0, "charged": 0, "max_tokens": 0, "reasons": []}

    async def client() -> None:
        for _ in attempts:  # shared: the tasks together make `attempts` requests
            tokens = rng.randint(50, 250)
            result = await store.reserve(spec["key"], limits, tokens)
            if isinstance(result, Denial):
                if result.limit_name.value not in tally["reasons"]:
                    tally["reasons"].append(result.limit_name.value)
                continue
            assert isinstance(result, Reservation)
            tally["admitted"] += 1
            tally["reserved"] += tokens
            tally["max_tokens"] = max(tally["max_tokens"], tokens)
            await asyncio.sleep(rng.random() * 0.005)
            actual = tokens // 2
            await store.reconcile(result, actual)
            tally["charged"] += actual

    await asyncio.gather(*(client() for _ in range(spec["concurrency"])))
    return tally


async def main() -> None:
    url, prefix, replicas, specs = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    store = RedisLimitStore(url, key_prefix=prefix, timeout_s=5)
    barrier = aioredis.Redis.from_url(url)
    try:
        await store.check()  # connected and imported: now wait for the other replicas
        await barrier.incr(f"{prefix}:barrier")
        deadline = time.monotonic() + 30
        while int(await barrier.get(f"{prefix}:barrier") or 0) < replicas:
            assert time.monotonic() < deadline, "the other replicas never arrived"
            await asyncio.sleep(0.002)
        began = time.time()
        tallies = await asyncio.gather(*(run_key(store, spec) for spec in specs))
        ended = time.time()
    finally:
        await store.aclose()
        await barrier.aclose()
    print(
        json.dumps({"began": began, "ended": ended, "keys": {s["key"]: t for s, t in zip(specs, tallies, strict=True)}})
    )


if __name__ == "__main__":
    asyncio.run(main())
