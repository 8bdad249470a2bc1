"""The ResponseCache contract: complete non-stream response bodies by request key; failures are misses."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ResponseCache"]


@runtime_checkable
class ResponseCache(Protocol):
    """Response bodies by `cache_key`. Implementations: MemoryResponseCache, RedisResponseCache.

    Never raises on the request path: a store that fails or is slow answers `get` with None (a miss)
    and drops the `put`, so a cache outage costs latency at most `timeout_s`, never an error."""

    async def get(self, key: str) -> bytes | None:
        """The cached response JSON, or None (absent, expired, or the store failed)."""
        ...

    async def put(self, key: str, response: bytes) -> None:
        """Store a complete, successful non-stream response JSON for `ttl_s`."""
        ...

    async def aclose(self) -> None: ...
