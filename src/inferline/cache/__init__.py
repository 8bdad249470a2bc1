"""The response cache: identical deterministic requests answered from a stored complete response.

    config.py   CacheConfig (the `cache` section)
    key.py      cache_key (sha256 of the normalized request), cacheable (temperature 0 or a seed)
    base.py     ResponseCache protocol (get / put / aclose; failures are misses, never errors)
    memory.py   MemoryResponseCache (per process, LRU + TTL)
    redis.py    RedisResponseCache (shared by all replicas, TTL)
    sse.py      as_sse_chunks: a cached response replayed as an OpenAI stream

Gateway use, per request (after authenticate, before admit):

    if cache is not None and cacheable(body, config.only_deterministic):
        key = cache_key(body, parsed.kind, scope=principal.name)
        if (hit := await cache.get(key)) is not None:
            reply with hit, or as_sse_chunks(hit, parsed.kind, include_usage) when stream=true
        ... on a complete 200 non-stream response: await cache.put(key, body_bytes)
"""

from __future__ import annotations

from collections.abc import Callable

from .base import ResponseCache
from .config import CacheConfig
from .key import EXCLUDED_FIELDS, cache_key, cacheable
from .memory import MemoryResponseCache
from .sse import as_sse_chunks

__all__ = [
    "CACHES",
    "EXCLUDED_FIELDS",
    "CacheConfig",
    "MemoryResponseCache",
    "ResponseCache",
    "as_sse_chunks",
    "cache_key",
    "cacheable",
    "create_response_cache",
]


def _memory(config: CacheConfig) -> ResponseCache:
    return MemoryResponseCache(config.ttl_s, config.max_entries, config.max_entry_bytes)


def _redis(config: CacheConfig) -> ResponseCache:
    from .redis import RedisResponseCache

    return RedisResponseCache.from_config(config)


CACHES: dict[str, Callable[[CacheConfig], ResponseCache]] = {"memory": _memory, "redis": _redis}


def create_response_cache(config: CacheConfig) -> ResponseCache | None:
    """The configured cache, or None when caching is disabled."""
    return CACHES[config.store](config) if config.enabled else None
