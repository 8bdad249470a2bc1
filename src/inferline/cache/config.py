"""Typed configuration of the response cache (its own section: `cache`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inferline.limits.config import SINGLE_FLIGHT_WAIT_S, StoreBreakerConfig

__all__ = ["CACHE_MAX_ENTRIES", "CACHE_MAX_ENTRY_BYTES", "CACHE_TIMEOUT_S", "CACHE_TTL_S", "CacheConfig"]

CACHE_TTL_S = 300.0
CACHE_MAX_ENTRIES = 10_000
CACHE_MAX_ENTRY_BYTES = 1024 * 1024
CACHE_TIMEOUT_S = 0.1  # a cache lookup that takes longer counts as a miss


class CacheConfig(BaseModel):
    """The response cache: complete non-stream responses, replayed for identical deterministic requests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(False, description="Serve identical requests from the cache.")
    fallback_only: bool = Field(
        False,
        description="Store answers, but serve them only as the last step of the fallback chain (no engine of the "
        "model or its fallbacks can answer), marked x-inferline-cache: fallback.",
    )
    store: Literal["memory", "redis"] = Field(
        "memory", description="memory: per process (LRU + TTL); redis: shared by all replicas (TTL)."
    )
    redis_url: str | None = Field(None, description="redis://host:port/db (store: redis).")
    key_prefix: str = Field("inferline:cache", min_length=1, max_length=64, description="Prefix of cache keys.")
    ttl_s: float = Field(CACHE_TTL_S, gt=0, description="How long a cached response is served.")
    max_entries: int = Field(
        CACHE_MAX_ENTRIES,
        ge=1,
        description="Memory store: least recently used entries beyond this are evicted. Redis: bounded by "
        "ttl_s and the server's maxmemory policy instead.",
    )
    max_entry_bytes: int = Field(CACHE_MAX_ENTRY_BYTES, ge=1, description="Larger responses are not cached.")
    only_deterministic: bool = Field(
        True, description="Cache only requests whose output is reproducible: temperature 0 or a fixed seed."
    )
    timeout_s: float = Field(
        CACHE_TIMEOUT_S,
        gt=0,
        le=5,
        description="A cache call slower than this counts as a miss (Redis). 0.1 s: a lookup must cost far "
        "less than the generation it may save, and a slow cache must never slow every request.",
    )
    breaker: StoreBreakerConfig = Field(
        default_factory=StoreBreakerConfig,
        description="Circuit breaker around the Redis cache: while open, lookups are misses at once instead of "
        "after timeout_s each.",
    )
    single_flight: bool = Field(
        True,
        description="Identical cacheable requests arriving while the first is still with the engine wait for "
        "its answer instead of each calling the engine (per gateway process).",
    )
    single_flight_wait_s: float = Field(
        SINGLE_FLIGHT_WAIT_S,
        gt=0,
        description="How long a request waits for an identical one in flight before calling the engine itself; "
        "bounded so one stuck request cannot hold its followers.",
    )

    @model_validator(mode="after")
    def _redis_url_given(self) -> CacheConfig:
        if self.enabled and self.store == "redis" and not self.redis_url:
            raise ValueError("cache store: redis needs `redis_url`")
        return self
