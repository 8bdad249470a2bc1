"""admit: may this engine take one more request now? (running < max_num_seqs and KV below threshold)

Fail closed: an engine whose load reading is stale or missing has no room, except backends that never
report load (remote providers), which are bounded by the gateway's own in-flight count. Between two
polls the engine's count is taken as its reading plus what we dispatched since minus what finished
since, and never fewer than we have in flight on it — so a burst cannot overrun an engine that looked free a moment ago.
"""

from __future__ import annotations

from inferline.backends.pool import BackendState
from inferline.config import BackendKind


def has_room(state: BackendState, now: float, max_age_s: float, kv_tokens: int = 0) -> bool:
    if not state.ready(now):
        return False
    if state.circuit(now) == "half_open" and state.in_flight > 0:
        return False  # one trial request at a time until the breaker closes again
    backend = state.backend
    seqs = backend.max_num_seqs
    kv_ratio = backend.kv_admit_ratio
    index, workers = state.worker
    if workers > 1:
        # One of several gateway processes (server.workers): this one holds its own slice of the engine's
        # slots (they add up to max_num_seqs) and of its KV budget, so together they never admit more than
        # one process would. The engine's own counts below stay global: they see every worker's requests.
        quota = max(1, seqs // workers + (index < seqs % workers))
        if state.in_flight >= quota:
            return False
        kv_ratio = kv_ratio * quota / max(1, seqs)
    if backend.kind is BackendKind.OPENAI:
        return state.in_flight < seqs
    load = state.fresh_load(now, max_age_s)
    if load is None:
        return False
    if load.kv_cache_usage_ratio is not None and load.kv_cache_usage_ratio >= backend.kv_admit_ratio:
        return False
    capacity = backend.kv_capacity_tokens
    if capacity and state.in_flight and (state.reserved_kv_tokens + kv_tokens) > kv_ratio * capacity:
        # Our own requests, at their full prompt + output, would push the cache past the threshold: the
        # engine's gauge only shows what they hold now, not what they will grow to. (An idle engine always
        # takes one request, so an oversized one is never starved.)
        return False
    since_poll = state.dispatched_since_poll - state.completed_since_poll
    effective = max(load.running + load.waiting + since_poll, state.in_flight)
    return effective < seqs
