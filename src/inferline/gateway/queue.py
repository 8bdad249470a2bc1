"""queue: the wait room of one model — shortest token budget first, with aging; deadline; dispatch. 429.

A request waits here until an engine of its model has room (gateway/saturation.py, fail closed); then the
model's Picker (gateway/route/) chooses among the engines with room, and the request holds one slot on it
until `release`. Queue full -> 429 queue_full; deadline passed -> 429 queue_timeout; no engine healthy ->
503 no_backend; every one with Retry-After from the measured dispatch rate.

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
from typing import Any

from inferline.backends.pool import BackendState
from inferline.config import AdmissionConfig, QueuePolicy
from inferline.errors import BackendUnavailable, QueueFull, QueueTimeout
from inferline.metrics import ModelMetrics

from .estimates import OutputEstimates
from .route.base import Picker
from .saturation import has_room
from .values import ParsedRequest, Principal, Target


@dataclass(slots=True, order=True)
class _Waiter:
    key: float
    seq: int
    future: asyncio.Future[BackendState] = field(compare=False)
    affinity: bytes | None = field(compare=False, default=None)
    prompt_tokens: int = field(compare=False, default=0)
    output_tokens: int = field(compare=False, default=0)


class ModelQueue:
    """Owns the waiting requests of one model and hands each a backend with room, best first."""

    def __init__(
        self,
        model: str,
        states: list[BackendState],
        cfg: AdmissionConfig,
        max_age_s: float,
        metrics: ModelMetrics,
        picker: Picker,
    ) -> None:
        self.model = model
        self._states = states  # the pool's live list for this model (discovery may grow or shrink it)
        self._cfg = cfg
        self._max_age_s = max_age_s
        self._pick = picker.pick
        self._heap: list[_Waiter] = []
        self._seq = itertools.count()
        self._depth = metrics.queue_depth
        self._wait = metrics.queue_time
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
        accounting = self._cfg.kv_accounting
        return [s for s in self._states if has_room(s, now, self._max_age_s, kv_tokens, accounting)]

    async def acquire(
        self, key: float, affinity: bytes | None = None, prompt_tokens: int = 0, output_tokens: int = 0
    ) -> BackendState:
        """Wait for a backend with room for prompt_tokens + output_tokens more; the caller owns one
        in-flight slot on it until release(state, prompt_tokens, output_tokens, generated)."""
        now = time.monotonic()
        kv_tokens = prompt_tokens + output_tokens
        if not self._heap:
            room = self._with_room(now, kv_tokens)
            if room:
                state = self._pick(room, now, affinity)
                if state is not None:
                    self._take(state, prompt_tokens, output_tokens)
                    self._wait.observe(0.0)
                    return state
        if not self.any_ready(now):
            raise BackendUnavailable(f"no backend of model {self.model!r} is healthy", retry_after_s=5)
        if len(self._heap) >= self._cfg.queue_max_depth:
            raise QueueFull(
                f"model {self.model!r} is saturated and its queue is full ({self._cfg.queue_max_depth} waiting)",
                retry_after_s=self.retry_after_s(),
            )
        future = asyncio.get_running_loop().create_future()
        waiter = _Waiter(key, next(self._seq), future, affinity, prompt_tokens, output_tokens)
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
            self.release(waiter.future.result(), waiter.prompt_tokens, waiter.output_tokens)
        else:
            waiter.future.cancel()
            try:
                self._heap.remove(waiter)
                heapq.heapify(self._heap)
            except ValueError:
                pass
        self._depth.set(len(self._heap))

    def _take(self, state: BackendState, prompt_tokens: int, output_tokens: int) -> None:
        state.in_flight += 1
        state.reserved_kv_tokens += prompt_tokens + output_tokens
        state.unstarted_prompt_tokens += prompt_tokens
        state.output_budget_in_flight += output_tokens
        state.dispatched_since_poll += 1
        self._dispatched += 1

    def release(self, state: BackendState, prompt_tokens: int = 0, output_tokens: int = 0, generated: int = 0) -> None:
        """Give back a slot taken by acquire or try_other; `generated`: the tokens relay counted on it (a
        request with none never started, so its prompt still counts as unstarted)."""
        if generated == 0:
            state.unstarted_prompt_tokens -= prompt_tokens
        state.in_flight -= 1
        state.reserved_kv_tokens -= prompt_tokens + output_tokens
        state.output_budget_in_flight -= output_tokens
        state.generated_in_flight -= generated
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
            room = self._with_room(now, waiter.prompt_tokens + waiter.output_tokens)
            state = self._pick(room, now, waiter.affinity) if room else None
            if state is None:
                break  # the head waits: no overtaking by smaller requests (that would starve big ones)
            heapq.heappop(self._heap)
            self._take(state, waiter.prompt_tokens, waiter.output_tokens)
            waiter.future.set_result(state)
        self._depth.set(len(self._heap))

    def try_other(self, exclude: set[str], prompt_tokens: int = 0, output_tokens: int = 0) -> BackendState | None:
        """A retry: another backend with room right now (no queueing), or None."""
        now = time.monotonic()
        room = [s for s in self._with_room(now, prompt_tokens + output_tokens) if s.name not in exclude]
        state = self._pick(room, now, None) if room else None
        if state is not None:
            self._take(state, prompt_tokens, output_tokens)
        return state

    def retry_after_s(self) -> float:
        """How long until the queue ahead of a new request has likely drained, from the dispatch rate."""
        elapsed = max(1.0, time.monotonic() - self._started)
        rate = self._dispatched / elapsed
        if rate <= 0:
            return 5.0
        return min(60.0, max(1.0, len(self._heap) / rate))


class Queues:
    """The queue stage: one ModelQueue per model; turns a request into a Target (one granted engine slot)."""

    def __init__(
        self,
        pool_by_model: dict[str, list[BackendState]],
        cfg: AdmissionConfig,
        max_age_s: float,
        metrics: dict[str, ModelMetrics],
        picker: Picker,
        estimates: OutputEstimates,
        prefix_key: Callable[[dict[str, Any]], bytes | None],
    ) -> None:
        self._estimates = estimates
        self._prefix_key = prefix_key
        self.by_model = {
            m: ModelQueue(m, states, cfg, max_age_s, metrics[m], picker) for m, states in pool_by_model.items()
        }

    async def acquire(self, model: str, parsed: ParsedRequest, principal: Principal) -> Target:
        """Wait for a slot on an engine of `model` (which may be a fallback of parsed.model)."""
        queue = self.by_model[model]
        prompt = parsed.prompt_tokens_estimate
        output = self._estimates.output_budget(parsed.model, parsed.max_tokens)
        now = time.monotonic()
        key = queue.key(prompt + output, principal.priority_offset_s, now)
        state = await queue.acquire(key, self._prefix_key(parsed.body), prompt, output)
        # vLLM's priority scheduler runs lower values first: the same order as our queue.
        return Target(state, model, prompt, output, priority=int(key - now))

    def try_other(self, model: str, exclude: set[str], failed: Target) -> Target | None:
        """A slot on another engine of `model` with room right now, or None (retries never queue)."""
        state = self.by_model[model].try_other(exclude, failed.prompt_tokens, failed.output_tokens)
        if state is None:
            return None
        return Target(state, model, failed.prompt_tokens, failed.output_tokens, failed.priority)

    def release(self, target: Target, generated: int) -> None:
        self.by_model[target.model].release(target.state, target.prompt_tokens, target.output_tokens, generated)

    def any_ready(self, model: str, now: float) -> bool:
        return self.by_model[model].any_ready(now)

    def depth(self, model: str) -> int:
        return len(self.by_model[model])

    def dispatch_all(self) -> None:
        for queue in self.by_model.values():
            queue.dispatch()
