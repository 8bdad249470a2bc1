"""least_loaded: the candidate with the lowest load score; equal scores take turns.

Score (backends/pool.py `BackendState.score`): KV use + (running + dispatched since the last poll
+ 2 x waiting) / max_num_seqs, never below our own in-flight share; unknown or stale load scores as a
full engine (1.0 + ours), so a metrics gap never makes an engine look idle.
"""

from __future__ import annotations

from inferline.backends.pool import BackendState

# Backends whose scores differ by less than this are equally good: they take turns, so equal engines share
# load evenly even one request at a time, instead of the first one in the list taking every request.
TIE_EPSILON = 0.05


class LeastLoaded:
    def __init__(self, metrics_max_age_s: float) -> None:
        self._max_age_s = metrics_max_age_s
        self._turn = 0

    def scores(self, candidates: list[BackendState], now: float) -> dict[str, float]:
        return {s.name: s.score(now, self._max_age_s) for s in candidates}

    def best(self, candidates: list[BackendState], scores: dict[str, float]) -> BackendState:
        self._turn += 1
        n = len(candidates)
        return min(
            enumerate(candidates),
            key=lambda t: (round(scores[t[1].name] / TIE_EPSILON), (t[0] + self._turn) % n),
        )[1]

    def pick(self, candidates: list[BackendState], now: float, affinity: bytes | None) -> BackendState | None:
        if not candidates:
            return None
        return self.best(candidates, self.scores(candidates, now))
