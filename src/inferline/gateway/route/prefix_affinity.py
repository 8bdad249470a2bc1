"""prefix_affinity: a shared prompt prefix goes back to the engine that served it, while load allows.

Load-gated: the prefix's engine is kept only while its score is within `affinity_max_load_gap` of the
least-loaded candidate's; otherwise the least-loaded one takes it (an `overloaded` diversion) and becomes
the prefix's engine. So one engine never takes every miss of a popular prefix. The prefix is a hash of
the prompt's first `affinity_prefix_bytes` of message text; prompts shorter than `affinity_min_bytes`
get none. The map is a bounded LRU (`affinity_entries`), per gateway process.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from inferline.backends.pool import BackendState
from inferline.config import RoutingConfig
from inferline.metrics import GatewayMetrics

from .least_loaded import LeastLoaded


def prefix_key(body: dict[str, Any], routing: RoutingConfig) -> bytes | None:
    """Identity of a prompt's shared prefix: a hash of its first affinity_prefix_bytes of text."""
    if not routing.prefix_affinity:
        return None
    if "messages" in body:
        parts = []
        for m in body["messages"]:
            content = m.get("content")
            parts.append(f"{m.get('role')}\x00{content}")
        text = "\x01".join(parts)
    elif isinstance(body.get("prompt"), str):
        text = body["prompt"]
    else:
        return None
    if len(text) < routing.affinity_min_bytes:
        return None
    return hashlib.blake2b(text[: routing.affinity_prefix_bytes].encode(), digest_size=16).digest()


class PrefixAffinity:
    def __init__(self, base: LeastLoaded, routing: RoutingConfig, metrics: GatewayMetrics) -> None:
        self._base = base
        self._max_gap = routing.affinity_max_load_gap
        self._entries = routing.affinity_entries
        self._last: OrderedDict[bytes, str] = OrderedDict()  # prefix -> backend that served it last
        self._decisions = {r: metrics.affinity_decisions.labels(r) for r in ("hit", "overloaded", "new")}
        self._size = metrics.affinity

    def pick(self, candidates: list[BackendState], now: float, affinity: bytes | None) -> BackendState | None:
        if not candidates:
            return None
        scores = self._base.scores(candidates, now)
        best = self._base.best(candidates, scores)
        if affinity is None:
            return best
        chosen = best
        previous = self._last.get(affinity)
        if previous is None:
            result = "new"
        elif previous in scores and scores[previous] <= scores[best.name] + self._max_gap:
            chosen = next(s for s in candidates if s.name == previous)
            result = "hit"
        else:
            # The prefix's engine exists but is too busy, or has no room at all right now: a diversion.
            result = "overloaded"
        self._last[affinity] = chosen.name
        self._last.move_to_end(affinity)
        if len(self._last) > self._entries:
            self._last.popitem(last=False)
        self._decisions[result].inc()
        self._size.set(len(self._last))
        return chosen
