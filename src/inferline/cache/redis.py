"""RedisResponseCache: responses shared by every replica, SET with a TTL; failures and slowness are misses.

A circuit breaker (inferline.limits.breaker) skips Redis at once after `failure_threshold` consecutive
failures, for `cooldown_s`: during an outage a lookup is an immediate miss, not a `timeout_s` wait.
"""

from __future__ import annotations

import asyncio
import logging
import time

from inferline.cache.config import CACHE_MAX_ENTRY_BYTES, CACHE_TIMEOUT_S, CACHE_TTL_S, CacheConfig
from inferline.limits.breaker import BreakerOpen, StoreBreaker
from inferline.limits.config import BREAKER_COOLDOWN_S, BREAKER_FAILURE_THRESHOLD
from inferline.limits.redis_conn import (
    REDIS_ERRORS,
    close_redis,
    connect_redis,
    drop_idle_connections,
    redacted_url,
)

__all__ = ["RedisResponseCache"]

log = logging.getLogger("inferline.cache")
_LOG_EVERY_S = 10.0
MAX_CONNECTIONS = 32


class RedisResponseCache:
    """`<prefix>:<key>` -> response JSON, expiring after `ttl_s`. Size is bounded by TTL and maxmemory."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "inferline:cache",
        ttl_s: float = CACHE_TTL_S,
        max_entry_bytes: int = CACHE_MAX_ENTRY_BYTES,
        timeout_s: float = CACHE_TIMEOUT_S,
        failure_threshold: int = BREAKER_FAILURE_THRESHOLD,
        cooldown_s: float = BREAKER_COOLDOWN_S,
    ) -> None:
        self._prefix = key_prefix
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max_entry_bytes = max_entry_bytes
        self._timeout_s = timeout_s
        self._where = redacted_url(url)
        self._client = connect_redis(url, timeout_s=timeout_s, max_connections=MAX_CONNECTIONS)
        self.breaker = StoreBreaker("cache", self._where, failure_threshold=failure_threshold, cooldown_s=cooldown_s)
        self._last_warning = 0.0
        self.hits_total = 0
        self.misses_total = 0
        self.errors_total = 0  # calls that failed or timed out
        self.skipped_total = 0  # calls answered as a miss without asking Redis (open circuit)

    @classmethod
    def from_config(cls, config: CacheConfig) -> RedisResponseCache:
        if not config.redis_url:
            raise ValueError("RedisResponseCache needs `redis_url`")
        return cls(
            config.redis_url,
            key_prefix=config.key_prefix,
            ttl_s=config.ttl_s,
            max_entry_bytes=config.max_entry_bytes,
            timeout_s=config.timeout_s,
            failure_threshold=config.breaker.failure_threshold,
            cooldown_s=config.breaker.cooldown_s,
        )

    async def get(self, key: str) -> bytes | None:
        if not self._allowed():
            self.misses_total += 1
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                value = await self._client.get(f"{self._prefix}:{key}")
        except REDIS_ERRORS as exc:
            await self._failed("get", exc)
            return None
        except BaseException:
            self.breaker.abandon()
            raise
        if self.breaker.success():
            await drop_idle_connections(self._client)
        if value is None:
            self.misses_total += 1
            return None
        self.hits_total += 1
        return value if isinstance(value, bytes) else value.encode()

    async def put(self, key: str, response: bytes) -> None:
        if len(response) > self._max_entry_bytes or not self._allowed():
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._client.set(f"{self._prefix}:{key}", response, px=self._ttl_ms)
        except REDIS_ERRORS as exc:
            await self._failed("put", exc)
            return
        except BaseException:
            self.breaker.abandon()
            raise
        if self.breaker.success():
            await drop_idle_connections(self._client)

    def _allowed(self) -> bool:
        try:
            self.breaker.acquire()
        except BreakerOpen:
            self.skipped_total += 1
            return False
        return True

    async def _failed(self, op: str, exc: BaseException) -> None:
        if self.breaker.failure(exc):
            await drop_idle_connections(self._client)
        self.errors_total += 1
        self.misses_total += op == "get"
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_S:
            self._last_warning = now
            log.warning(
                "response cache %s at %s failed (%s: %s); treated as a miss [errors so far: %d]",
                op,
                self._where,
                type(exc).__name__,
                exc,
                self.errors_total,
            )

    async def aclose(self) -> None:
        await close_redis(self._client)

    def __repr__(self) -> str:
        return f"RedisResponseCache({self._where}, prefix={self._prefix!r})"
