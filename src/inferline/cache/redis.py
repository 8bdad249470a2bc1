"""RedisResponseCache: responses shared by every replica, SET with a TTL; failures and slowness are misses."""

from __future__ import annotations

import asyncio
import logging
import time

from redis import asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from inferline.cache.config import CACHE_MAX_ENTRY_BYTES, CACHE_TIMEOUT_S, CACHE_TTL_S, CacheConfig
from inferline.limits.redis import redacted_url

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
    ) -> None:
        self._prefix = key_prefix
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max_entry_bytes = max_entry_bytes
        self._timeout_s = timeout_s
        self._where = redacted_url(url)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._last_warning = 0.0
        self.hits_total = 0
        self.misses_total = 0
        self.errors_total = 0

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
        )

    async def get(self, key: str) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                value = await self._client.get(f"{self._prefix}:{key}")
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            return None
        if value is None:
            self.misses_total += 1
            return None
        self.hits_total += 1
        return value if isinstance(value, bytes) else value.encode()

    async def put(self, key: str, response: bytes) -> None:
        if len(response) > self._max_entry_bytes:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._client.set(f"{self._prefix}:{key}", response, px=self._ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("put", exc)

    def _failed(self, op: str, exc: BaseException) -> None:
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
        await self._client.aclose()
        await self._client.connection_pool.disconnect()

    def __repr__(self) -> str:
        return f"RedisResponseCache({self._where}, prefix={self._prefix!r})"
