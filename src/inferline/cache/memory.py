"""MemoryResponseCache: per-process LRU with a TTL per entry; no awaits, so every call is atomic."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from inferline.cache.config import CACHE_MAX_ENTRIES, CACHE_MAX_ENTRY_BYTES, CACHE_TTL_S

__all__ = ["MemoryResponseCache"]


class MemoryResponseCache:
    """At most `max_entries` responses, each served for `ttl_s`; the least recently used goes first."""

    def __init__(
        self,
        ttl_s: float = CACHE_TTL_S,
        max_entries: int = CACHE_MAX_ENTRIES,
        max_entry_bytes: int = CACHE_MAX_ENTRY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._max_entry_bytes = max_entry_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expires at, body)
        self.hits_total = 0
        self.misses_total = 0
        self.evictions_total = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses_total += 1
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            self.misses_total += 1
            return None
        self._entries.move_to_end(key)
        self.hits_total += 1
        return entry[1]

    async def put(self, key: str, response: bytes) -> None:
        if len(response) > self._max_entry_bytes:
            return
        self._entries[key] = (self._clock() + self._ttl_s, response)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
            self.evictions_total += 1

    def __len__(self) -> int:
        return len(self._entries)

    async def aclose(self) -> None:
        self._entries.clear()
