"""cached: answer from the response cache — before admission for a hit, and as the fallback chain's last step.

Only deterministic requests (temperature 0 or a seed, per `cache.only_deterministic`) have a key; the key
is scoped to the API key's name, so one tenant never reads another's answers. Cache failures are misses,
never errors. Stored answers are complete non-stream responses; a stream request gets them replayed as
one SSE burst. With `cache.single_flight`, identical requests arriving while the first is still with the
engine wait for its answer (cache/flight.py): the miss leads, and must `finish` its Lead however it ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferline.cache import CacheConfig, ResponseCache, as_sse_chunks, cache_key, cacheable
from inferline.cache.flight import Cached, Lead, SingleFlight
from inferline.metrics import GatewayMetrics

from .values import Delivery, ParsedRequest, Principal


@dataclass(frozen=True, slots=True)
class Answer:
    """A response to send without an engine: the body (or SSE burst), and how it was found (x-inferline-cache)."""

    body: bytes
    how: str  # "hit" | "coalesced" | "fallback"


class CachedAnswers:
    def __init__(self, cache: ResponseCache | None, cfg: CacheConfig, metrics: GatewayMetrics) -> None:
        self._cache = cache
        self._cfg = cfg
        self._flights = (
            SingleFlight(cache, cfg.single_flight_wait_s) if cache is not None and cfg.single_flight else None
        )
        self._results = {r: metrics.cache_requests.labels(r) for r in ("hit", "miss", "fallback", "coalesced")}

    def key(self, parsed: ParsedRequest, principal: Principal) -> str | None:
        """The request's cache key, or None when it is not cacheable (or caching is off)."""
        if self._cache is None or not cacheable(parsed.body, self._cfg.only_deterministic):
            return None
        return cache_key(parsed.body, parsed.kind, scope=principal.name)

    async def lookup(self, key: str | None, parsed: ParsedRequest) -> Answer | Lead | None:
        """An answer to send now; else a Lead (this request calls the engine and shares what it gets —
        `finish` it however the request ends) or None. Nothing when the cache is fallback-only."""
        if key is None or self._cache is None or self._cfg.fallback_only:
            return None
        if self._flights is None:
            hit = await self._cache.get(key)
            found: Cached | Lead | None = None if hit is None else Cached(hit, "hit")
        else:
            found = await self._flights.get_or_lead(key, can_lead=not parsed.stream)
        if isinstance(found, Cached):
            self._results[found.how].inc()
            return Answer(_render(parsed, found.body), found.how)
        self._results["miss"].inc()
        return found

    async def fallback(self, key: str | None, parsed: ParsedRequest) -> Answer | None:
        """The last step of the fallback chain, when no engine of the model or its fallbacks is ready."""
        if key is None or self._cache is None:
            return None
        hit = await self._cache.get(key)
        if hit is None:
            return None
        self._results["fallback"].inc()
        return Answer(_render(parsed, hit), "fallback")

    async def store(self, key: str | None, delivery: Delivery, lead: Lead | None) -> None:
        """Keep a complete answer, and hand it to the identical requests waiting on this one."""
        body = delivery.body if delivery.complete else None
        if lead is not None:
            lead.finish(body)
        if key is not None and self._cache is not None and body is not None:
            await self._cache.put(key, body)

    async def aclose(self) -> None:
        if self._cache is not None:
            await self._cache.aclose()


def _render(parsed: ParsedRequest, body: bytes) -> bytes:
    if not parsed.stream:
        return body
    return b"".join(as_sse_chunks(body, "chat" if parsed.kind == "chat" else "completions", parsed.include_usage))
