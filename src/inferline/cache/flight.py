"""SingleFlight: identical concurrent cacheable requests cause one engine call (per gateway process).

    found = await flights.get_or_lead(key, can_lead=not stream)
    Cached(body, "hit")        the store had it
    Cached(body, "coalesced")  an identical request was in flight; this is its answer
    Lead                       call the engine; then `lead.finish(body)` (None: no shareable answer)

The first request for a key that misses becomes the leader; identical requests arriving before it ends
wait (at most `wait_s`) for its answer instead of calling the engine. The leader publishes its complete
non-stream response body with `finish`; when it has none to share (it failed, was cancelled, was a
stream, or took longer than `wait_s`), each waiting request calls the engine itself, so single-flight
never turns one failure into many. Only a non-stream request can lead (a stream's body is not kept);
a stream request can follow, and gets the leader's answer replayed as SSE like any cache hit.
Across replicas there is no coordination: each process has its own leaders (the shared Redis cache
still serves what any replica stored).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from inferline.limits.config import SINGLE_FLIGHT_WAIT_S

from .base import ResponseCache

__all__ = ["Cached", "Lead", "SingleFlight"]


@dataclass(frozen=True, slots=True)
class Cached:
    """A response to serve without calling the engine; `how` is the x-inferline-cache header value."""

    body: bytes
    how: str  # "hit" | "coalesced"


class Lead:
    """This request calls the engine. `finish(body)` shares its answer with the identical requests that
    waited (idempotent; the first call wins). A Lead without followers' future (a request that may not
    lead) finishes as a no-op."""

    __slots__ = ("_flights", "_future", "key")

    def __init__(self, flights: SingleFlight | None, key: str, future: asyncio.Future[bytes | None] | None) -> None:
        self._flights = flights
        self._future = future
        self.key = key

    @property
    def leading(self) -> bool:
        return self._future is not None

    def finish(self, body: bytes | None) -> None:
        future, self._future = self._future, None
        if future is None:
            return
        if self._flights is not None:
            self._flights._done(self.key, future)
        if not future.done():
            future.set_result(body)


class SingleFlight:
    """Coalesces identical cacheable requests in flight in front of a ResponseCache."""

    def __init__(self, cache: ResponseCache, wait_s: float = SINGLE_FLIGHT_WAIT_S) -> None:
        self.cache = cache
        self._wait_s = wait_s
        self._in_flight: dict[str, asyncio.Future[bytes | None]] = {}
        self.coalesced_total = 0  # requests answered with an in-flight leader's response
        self.led_total = 0  # requests that called the engine as a leader
        self.gave_up_total = 0  # followers that called the engine themselves (leader failed or was slow)

    def __len__(self) -> int:
        return len(self._in_flight)

    async def get_or_lead(self, key: str, *, can_lead: bool = True) -> Cached | Lead:
        """A stored or coalesced answer, or the right (and duty) to call the engine."""
        hit = await self.cache.get(key)
        if hit is not None:
            return Cached(hit, "hit")
        future = self._in_flight.get(key)
        if future is not None:
            try:
                # shield: a follower that gives up (timeout, its client left) must not cancel the leader's future
                body = await asyncio.wait_for(asyncio.shield(future), self._wait_s)
            except TimeoutError:
                body = None
            if body is not None:
                self.coalesced_total += 1
                return Cached(body, "coalesced")
            self.gave_up_total += 1
            return Lead(None, key, None)
        if not can_lead:
            return Lead(None, key, None)
        future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        self.led_total += 1
        return Lead(self, key, future)

    def _done(self, key: str, future: asyncio.Future[bytes | None]) -> None:
        if self._in_flight.get(key) is future:
            del self._in_flight[key]
