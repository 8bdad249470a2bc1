"""RedisLimitStore: limit state shared by every gateway replica; each operation is one Lua script call.

Check-and-reserve is lua/reserve.lua and reconcile is lua/reconcile.lua, each run with EVALSHA (loaded
with SCRIPT LOAD on first use, and again after a Redis restart flushes the script cache). Windows are
timed by the Redis server's TIME, so replicas with skewed clocks still agree. Every call is bounded by
`timeout_s`; any Redis or network failure leaves this module as LimitStoreUnavailable, never as a
redis-py exception and never as a hang. A circuit breaker (breaker.py) skips Redis at once after
`failure_threshold` consecutive failures, for `cooldown_s`, then lets one call try it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from importlib import resources
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import NoScriptError

from .base import (
    LIMIT_CODES,
    WINDOW_MS,
    Denial,
    LimitStoreUnavailable,
    Quota,
    Reservation,
    denial_for,
    oversized_request,
)
from .breaker import BreakerOpen, StoreBreaker
from .config import (
    BREAKER_COOLDOWN_S,
    BREAKER_FAILURE_THRESHOLD,
    CONCURRENCY_LEASE_S,
    STORE_TIMEOUT_S,
    KeyLimits,
    LimitsConfig,
)
from .redis_conn import REDIS_ERRORS, close_redis, connect_redis, drop_idle_connections, redacted_url

__all__ = ["RedisLimitStore", "redacted_url"]

MAX_CONNECTIONS = 64  # per gateway process; callers beyond this wait (within timeout_s) for a free one


class _Script:
    """A Lua script run by EVALSHA; loaded with SCRIPT LOAD when the server does not know it yet."""

    __slots__ = ("sha", "source")

    def __init__(self, name: str) -> None:
        self.source = resources.files(__package__).joinpath("lua").joinpath(name).read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def run(self, client: aioredis.Redis, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


_RESERVE = _Script("reserve.lua")
_RECONCILE = _Script("reconcile.lua")


def _arg(limit: int | None) -> int:
    return -1 if limit is None else limit


class RedisLimitStore:
    """Limits shared by all replicas through one Redis. Build with `from_config` or a URL; `aclose` at exit."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "inferline:limits",
        timeout_s: float = STORE_TIMEOUT_S,
        concurrency_lease_s: float = CONCURRENCY_LEASE_S,
        max_connections: int = MAX_CONNECTIONS,
        failure_threshold: int = BREAKER_FAILURE_THRESHOLD,
        cooldown_s: float = BREAKER_COOLDOWN_S,
    ) -> None:
        self._prefix = key_prefix
        self._timeout_s = timeout_s
        self._lease_ms = int(concurrency_lease_s * 1000)
        self._where = redacted_url(url)
        self._client = connect_redis(url, timeout_s=timeout_s, max_connections=max_connections)
        self.breaker = StoreBreaker("limits", self._where, failure_threshold=failure_threshold, cooldown_s=cooldown_s)
        # Reservation ids: a random per-process prefix and a counter (unique across replicas, no syscall).
        self._id_prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)

    @classmethod
    def from_config(cls, config: LimitsConfig) -> RedisLimitStore:
        if not config.redis_url:
            raise ValueError("RedisLimitStore needs `redis_url`")
        return cls(
            config.redis_url,
            key_prefix=config.key_prefix,
            timeout_s=config.store_timeout_s,
            concurrency_lease_s=config.concurrency_lease_s,
            failure_threshold=config.breaker.failure_threshold,
            cooldown_s=config.breaker.cooldown_s,
        )

    def _base(self, key_name: str) -> str:
        return f"{self._prefix}:{{{key_name}}}"

    async def _call(self, script: _Script, keys: list[str], args: list[str | int]) -> Any:
        try:
            self.breaker.acquire()
        except BreakerOpen as exc:
            raise LimitStoreUnavailable(f"redis limit store: {exc}", retry_after_s=exc.retry_after_s) from None
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await script.run(self._client, keys, args)
        except REDIS_ERRORS as exc:
            if self.breaker.failure(exc):
                await drop_idle_connections(self._client)
            detail = str(exc) or "no answer"
            raise LimitStoreUnavailable(
                f"redis limit store at {self._where}: {type(exc).__name__}: {detail} (timeout {self._timeout_s} s)",
                retry_after_s=self.breaker.retry_after_s(),
            ) from exc
        except BaseException:  # cancelled mid-call: no verdict on Redis
            self.breaker.abandon()
            raise
        if self.breaker.success():
            await drop_idle_connections(self._client)
        return result

    async def reserve(
        self, key_name: str, limits: KeyLimits, tokens: int, now: float | None = None
    ) -> Reservation | Denial:
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0; got {tokens}")
        too_big = oversized_request(key_name, limits, tokens)
        if too_big is not None:
            return too_big
        if limits.unlimited:
            return Reservation.unrecorded(key_name, tokens)
        rid = f"{self._id_prefix}{next(self._ids):x}"
        now_arg = -1 if now is None else int(now * 1000)
        reply = await self._call(
            _RESERVE,
            [self._base(key_name)],
            [
                rid,
                tokens,
                now_arg,
                _arg(limits.requests_per_minute),
                _arg(limits.tokens_per_minute),
                _arg(limits.max_concurrent),
                _arg(limits.tokens_per_day),
                _arg(limits.tokens_per_month),
                WINDOW_MS,
                self._lease_ms,
            ],
        )
        if reply[0] == 1:
            _, _, day, month, count, used = (int(v) for v in reply)
            quota = Quota.of(limits, count + 1, used, WINDOW_MS / 1000)
            return Reservation(rid, key_name, tokens, quota, day, month)
        _, code, limit, used, retry_ms, count, window_tokens, reset_ms = (int(v) for v in reply)
        quota = Quota.of(limits, count, window_tokens, reset_ms / 1000)
        retry_s = None if retry_ms < 0 else retry_ms / 1000
        return denial_for(key_name, LIMIT_CODES[code - 1], limit, used, tokens, retry_s, quota)

    async def reconcile(self, reservation: Reservation, actual_tokens: int | None) -> bool:
        if not reservation.recorded:
            return False
        if actual_tokens is not None and actual_tokens < 0:
            raise ValueError(f"actual_tokens must be >= 0; got {actual_tokens}")
        reply = await self._call(
            _RECONCILE,
            [self._base(reservation.key_name)],
            [
                reservation.id,
                reservation.tokens,
                -1 if actual_tokens is None else actual_tokens,
                reservation.day,
                reservation.month,
            ],
        )
        return int(reply) == 1

    async def check(self) -> None:
        """PING, bounded by timeout_s. Bypasses the breaker (a probe must see the store itself), and
        never changes it."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._client.ping()
        except REDIS_ERRORS as exc:
            raise LimitStoreUnavailable(f"redis limit store at {self._where}: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await close_redis(self._client)

    def __repr__(self) -> str:
        return f"RedisLimitStore({self._where}, prefix={self._prefix!r})"
