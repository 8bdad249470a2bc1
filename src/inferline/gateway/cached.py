"""cached: answer from the response cache — before admission for a hit, and as the fallback chain's last step.

Only deterministic requests (temperature 0 or a seed, per `cache.only_deterministic`) have a key; the key
is scoped to the API key's name, so one tenant never reads another's answers. Cache failures are misses,
never errors. Stored answers are complete non-stream responses; a stream request gets them replayed as
one SSE burst.
"""

from __future__ import annotations

from inferline.cache import CacheConfig, ResponseCache, as_sse_chunks, cache_key, cacheable
from inferline.metrics import GatewayMetrics

from .values import Delivery, ParsedRequest, Principal


class CachedAnswers:
    def __init__(self, cache: ResponseCache | None, cfg: CacheConfig, metrics: GatewayMetrics) -> None:
        self._cache = cache
        self._cfg = cfg
        self._results = {r: metrics.cache_requests.labels(r) for r in ("hit", "miss", "fallback")}

    def key(self, parsed: ParsedRequest, principal: Principal) -> str | None:
        """The request's cache key, or None when it is not cacheable (or caching is off)."""
        if self._cache is None or not cacheable(parsed.body, self._cfg.only_deterministic):
            return None
        return cache_key(parsed.body, parsed.kind, scope=principal.name)

    async def lookup(self, key: str | None, parsed: ParsedRequest) -> bytes | None:
        """The answer to send now (body or SSE burst), or None. Nothing when the cache is fallback-only."""
        if key is None or self._cache is None or self._cfg.fallback_only:
            return None
        hit = await self._cache.get(key)
        self._results["hit" if hit is not None else "miss"].inc()
        return None if hit is None else _render(parsed, hit)

    async def fallback(self, key: str | None, parsed: ParsedRequest) -> bytes | None:
        """The last step of the fallback chain, when no engine of the model or its fallbacks is ready."""
        if key is None or self._cache is None:
            return None
        hit = await self._cache.get(key)
        if hit is not None:
            self._results["fallback"].inc()
        return None if hit is None else _render(parsed, hit)

    async def store(self, key: str | None, delivery: Delivery) -> None:
        if key is not None and self._cache is not None and delivery.body is not None and delivery.complete:
            await self._cache.put(key, delivery.body)

    async def aclose(self) -> None:
        if self._cache is not None:
            await self._cache.aclose()


def _render(parsed: ParsedRequest, body: bytes) -> bytes:
    if not parsed.stream:
        return body
    return b"".join(as_sse_chunks(body, "chat" if parsed.kind == "chat" else "completions", parsed.include_usage))
