"""The gateway's admission and wait queue, as `inferline serve` configures them, in simulated time.

Same rules as gateway/admit.py and gateway/queue.py: an engine takes another request while it holds
fewer than max_num_seqs, its KV-cache use is below kv_admit_ratio (0.85), and (when it is not idle) the
prompt + output reservations of what we sent it fit under kv_admit_ratio x its KV capacity. The least
loaded engine with room wins (KV use + queue per slot, at least our in-flight share; equal scores
rotate). Otherwise the request waits, shortest token budget first with aging (priority policy) or in
arrival order (fcfs); the head is never overtaken. A full queue answers queue_full, a wait longer than
queue_timeout_s answers queue_timeout, and with no Ready engine at all the answer is no_backend.

Idealisation: engine load is read live here, where the gateway polls it every 0.5 s (its own in-flight
counts, which decide most admissions, are exact in both).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from inferline.autoscale.engine import VirtualEngine
from inferline.config import AdmissionConfig, QueuePolicy

__all__ = ["Backend", "GatewayModel"]


@dataclass(slots=True, eq=False)
class Backend:
    """One engine as the gateway sees it."""

    name: str
    engine: VirtualEngine
    max_num_seqs: int
    routable: bool = True
    in_flight: int = 0
    reserved_kv_tokens: int = 0

    def score(self) -> float:
        e = self.engine
        seqs = max(1, self.max_num_seqs)
        return max(e.kv_usage_ratio + (e.running + 2 * e.waiting) / seqs, self.in_flight / seqs)


Dispatch = Callable[[int, Backend, float], None]
Reject = Callable[[int, str, float], None]


class GatewayModel:
    """The wait queue of one model and the engines it dispatches to."""

    def __init__(self, cfg: AdmissionConfig, kv_admit_ratio: float, dispatch: Dispatch, reject: Reject) -> None:
        self.cfg = cfg
        self.kv_admit_ratio = kv_admit_ratio
        self.backends: list[Backend] = []
        self._dispatch_cb = dispatch
        self._reject_cb = reject
        self._heap: list[tuple[float, int, int, int]] = []  # (key, seq, request index, kv tokens)
        self._queued: set[int] = set()
        self._seq = 0
        self._rr = 0
        self.dispatched = 0

    @property
    def queue_depth(self) -> int:
        return len(self._queued)

    @property
    def in_flight(self) -> int:
        return sum(b.in_flight for b in self.backends)

    def any_ready(self) -> bool:
        return any(b.routable for b in self.backends)

    # -- requests ---------------------------------------------------------------------------------------------

    def arrive(self, idx: int, now_s: float, cost_tokens: int) -> bool:
        """A request arrives; returns True if it was queued (the caller arms its timeout)."""
        if not self._queued:
            backend = self._pick(cost_tokens)
            if backend is not None:
                self._send(idx, backend, cost_tokens, now_s)
                return False
        if not self.any_ready():
            self._reject_cb(idx, "no_backend", now_s)
            return False
        if len(self._queued) >= self.cfg.queue_max_depth:
            self._reject_cb(idx, "queue_full", now_s)
            return False
        key = now_s if self.cfg.policy is QueuePolicy.FCFS else now_s + cost_tokens / self.cfg.aging_tokens_per_s
        self._seq += 1
        heapq.heappush(self._heap, (key, self._seq, idx, cost_tokens))
        self._queued.add(idx)
        return True

    def timeout(self, idx: int, now_s: float) -> None:
        if idx in self._queued:  # still waiting: the heap entry is dropped lazily
            self._queued.discard(idx)
            self._reject_cb(idx, "queue_timeout", now_s)

    def release(self, backend: Backend, cost_tokens: int, now_s: float) -> None:
        backend.in_flight -= 1
        backend.reserved_kv_tokens -= cost_tokens
        self.dispatch(now_s)

    def dispatch(self, now_s: float) -> None:
        """Hand engines with room to the waiters, best first; the head waits rather than be overtaken."""
        heap = self._heap
        while heap:
            _, _, idx, cost = heap[0]
            if idx not in self._queued:
                heapq.heappop(heap)
                continue
            backend = self._pick(cost)
            if backend is None:
                return
            heapq.heappop(heap)
            self._queued.discard(idx)
            self._send(idx, backend, cost, now_s)

    def drop_all_queued(self, now_s: float, reason: str) -> None:
        for idx in list(self._queued):
            self._queued.discard(idx)
            self._reject_cb(idx, reason, now_s)
        self._heap.clear()

    # -- internals --------------------------------------------------------------------------------------------

    def _has_room(self, b: Backend, cost_tokens: int) -> bool:
        if not b.routable:
            return False
        e = b.engine
        if e.kv_usage_ratio >= self.kv_admit_ratio:
            return False
        capacity = e.kv_capacity_tokens
        if b.in_flight and b.reserved_kv_tokens + cost_tokens > self.kv_admit_ratio * capacity:
            return False
        return b.in_flight < b.max_num_seqs

    def _pick(self, cost_tokens: int) -> Backend | None:
        best: Backend | None = None
        best_key: tuple[float, int] | None = None
        n = len(self.backends)
        for i, b in enumerate(self.backends):
            if not self._has_room(b, cost_tokens):
                continue
            key = (round(b.score() / 0.01), (i - self._rr) % n)  # equal scores (within 1%) rotate
            if best_key is None or key < best_key:
                best, best_key = b, key
        if best is not None:
            self._rr += 1
        return best

    def _send(self, idx: int, backend: Backend, cost_tokens: int, now_s: float) -> None:
        backend.in_flight += 1
        backend.reserved_kv_tokens += cost_tokens
        self.dispatched += 1
        self._dispatch_cb(idx, backend, now_s)
