"""queue: the wait room of one model — shortest token budget first, with aging; deadline; dispatch.

The queue key is a virtual deadline, `arrival + class_offset + cost / aging_rate`. Every waiting request
ages at the same rate, so the heap order never changes while requests wait, and a request C tokens
costlier than another waits at most C / aging_rate seconds longer: short requests overtake long ones,
and long ones are never starved. FCFS is the same heap keyed by arrival alone.

All state changes happen between awaits (asyncio's critical section), so there are no locks.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from inferline.backends.pool import BackendState
from inferline.config import AdmissionConfig, QueuePolicy
from inferline.errors import BackendUnavailable, QueueFull, QueueTimeout
from inferline.metrics import GatewayMetrics

from .admit import has_room

Scorer = Callable[[BackendState, float], float]


@dataclass(slots=True, order=True)
class _Waiter:
    key: float
    seq: int
    future: asyncio.Future[BackendState] = field(compare=False)
    affinity: bytes | None = field(compare=False, default=None)
    kv_tokens: int = field(compare=False, default=0)


class ModelQueue:
    """Owns the waiting requests of one model and hands each a backend with room, best first."""

    def __init__(
        self,
        model: str,
        states: list[BackendState],
        cfg: AdmissionConfig,
        max_age_s: float,
        metrics: GatewayMetrics,
        pick: Callable[[list[BackendState], float, bytes | None], BackendState | None],
    ) -> None:
        self.model = model
        self._states = states
        self._cfg = cfg
        self._max_age_s = max_age_s
        self._pick = pick
        self._heap: list[_Waiter] = []
        self._seq = itertools.count()
        self._depth = metrics.queue_depth.labels(model)
        self._wait = metrics.queue_time.labels(model)
        self._dispatched = 0
        self._started = time.monotonic()

    def __len__(self) -> int:
        return len(self._heap)

    def key(self, cost_tokens: float, class_offset_s: float, now: float) -> float:
        if self._cfg.policy is QueuePolicy.FCFS:
            return now
        return now + class_offset_s + cost_tokens / self._cfg.aging_tokens_per_s

    def any_ready(self, now: float) -> bool:
        return any(s.ready(now) for s in self._states)

    def _with_room(self, now: float, kv_tokens: int) -> list[BackendState]:
        return [s for s in self._states if has_room(s, now, self._max_age_s, kv_tokens)]

    async def acquire(self, key: float, affinity: bytes | None = None, kv_tokens: int = 0) -> BackendState:
        """Wait for a backend with room for `kv_tokens` (prompt + output) more; the caller owns one
        in-flight slot on it until release(state, kv_tokens)."""
        now = time.monotonic()
        if not self._heap:
            room = self._with_room(now, kv_tokens)
            if room:
                state = self._pick(room, now, affinity)
                if state is not None:
                    self._take(state, kv_tokens)
                    self._wait.observe(0.0)
                    return state
        if not self.any_ready(now):
            raise BackendUnavailable(f"no backend of model {self.model!r} is healthy", retry_after_s=5)
        if len(self._heap) >= self._cfg.queue_max_depth:
            raise QueueFull(
                f"model {self.model!r} is saturated and its queue is full ({self._cfg.queue_max_depth} waiting)",
                retry_after_s=self.retry_after_s(),
            )
        waiter = _Waiter(key, next(self._seq), asyncio.get_running_loop().create_future(), affinity, kv_tokens)
        heapq.heappush(self._heap, waiter)
        self._depth.set(len(self._heap))
        try:
            async with asyncio.timeout(self._cfg.queue_timeout_s):
                state = await waiter.future
        except TimeoutError:
            self._forget(waiter)
            raise QueueTimeout(
                f"no engine of model {self.model!r} had room within {self._cfg.queue_timeout_s:.0f}s "
                f"(engines at max_num_seqs or KV above threshold)",
                retry_after_s=self.retry_after_s(),
            ) from None
        except asyncio.CancelledError:
            self._forget(waiter)
            raise
        self._wait.observe(time.monotonic() - now)
        return state

    def _forget(self, waiter: _Waiter) -> None:
        """A waiter that timed out or was cancelled: drop it, or give back the slot it was just handed."""
        if waiter.future.done() and not waiter.future.cancelled():
            self.release(waiter.future.result(), waiter.kv_tokens)
        else:
            waiter.future.cancel()
            try:
                self._heap.remove(waiter)
                heapq.heapify(self._heap)
            except ValueError:
                pass
        self._depth.set(len(self._heap))

    def _take(self, state: BackendState, kv_tokens: int) -> None:
        state.in_flight += 1
        state.reserved_kv_tokens += kv_tokens
        state.dispatched_since_poll += 1
        self._dispatched += 1

    def release(self, state: BackendState, kv_tokens: int = 0) -> None:
        state.in_flight -= 1
        state.reserved_kv_tokens -= kv_tokens
        state.completed_since_poll += 1
        self.dispatch()

    def dispatch(self) -> None:
        """Hand backends with room to the best waiters. Called on release, load polls and health changes."""
        if not self._heap:
            return
        now = time.monotonic()
        while self._heap:
            waiter = self._heap[0]
            if waiter.future.done():
                heapq.heappop(self._heap)
                continue
            room = self._with_room(now, waiter.kv_tokens)
            state = self._pick(room, now, waiter.affinity) if room else None
            if state is None:
                break  # the head waits: no overtaking by smaller requests (that would starve big ones)
            heapq.heappop(self._heap)
            self._take(state, waiter.kv_tokens)
            waiter.future.set_result(state)
        self._depth.set(len(self._heap))

    def try_other(self, exclude: set[str], kv_tokens: int = 0) -> BackendState | None:
        """A retry: another backend with room right now (no queueing), or None."""
        now = time.monotonic()
        room = [s for s in self._with_room(now, kv_tokens) if s.name not in exclude]
        state = self._pick(room, now, None) if room else None
        if state is not None:
            self._take(state, kv_tokens)
        return state

    def retry_after_s(self) -> float:
        """How long until the queue ahead of a new request has likely drained, from the dispatch rate."""
        elapsed = max(1.0, time.monotonic() - self._started)
        rate = self._dispatched / elapsed
        if rate <= 0:
            return 5.0
        return min(60.0, max(1.0, len(self._heap) / rate))
