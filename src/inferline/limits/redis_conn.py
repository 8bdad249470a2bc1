"""One way to connect to Redis, shared by the limit store and the response cache: bounded pool, timeouts.

Both stores talk to Redis the same way: a blocking connection pool whose every wait (a free connection,
connect, each socket read) is bounded by the store's timeout, one immediate retry on a fresh connection
(a pooled one may be stale after a Redis restart), and the same exceptions translated at the boundary.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

__all__ = ["REDIS_ERRORS", "close_redis", "connect_redis", "drop_idle_connections", "redacted_url"]

# What a Redis call raises when the server is down, slow or misbehaving (TimeoutError: asyncio.timeout).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def redacted_url(url: str) -> str:
    """host:port/db of a Redis URL, without scheme, user or password (for logs, errors and repr)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def connect_redis(url: str, *, timeout_s: float, max_connections: int) -> aioredis.Redis:
    """A client on a pool of at most `max_connections`; no wait inside it is longer than `timeout_s`.

    Nothing connects yet: the first command does (so a gateway starts while Redis is down)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,  # waiting for a free connection
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        # One immediate retry on a fresh connection: a pooled connection may be stale after a restart.
        retry=Retry(NoBackoff(), 1),
    )
    return aioredis.Redis(connection_pool=pool)


async def drop_idle_connections(client: aioredis.Redis) -> None:
    """Close the pool's idle connections (in-use ones are left to their callers). Called when a store's
    circuit opens or closes: connections opened before an outage point at a server that has gone (after a
    restart: "Connection closed by server" on first use), and each would otherwise cost a failed request."""
    with contextlib.suppress(*REDIS_ERRORS):
        await client.connection_pool.disconnect(inuse_connections=False)


async def close_redis(client: aioredis.Redis) -> None:
    await client.aclose()
    await client.connection_pool.disconnect()
