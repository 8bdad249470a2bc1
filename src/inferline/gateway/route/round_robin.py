"""round_robin: candidates in turn, load ignored (a baseline for benchmarks)."""

from __future__ import annotations

from inferline.backends.pool import BackendState


class RoundRobin:
    def __init__(self) -> None:
        self._turn = 0

    def pick(self, candidates: list[BackendState], now: float, affinity: bytes | None) -> BackendState | None:
        if not candidates:
            return None
        self._turn += 1
        return candidates[self._turn % len(candidates)]
