"""queue + admit, called directly: ordering by token budget with aging, FCFS, deadlines, no lost slots."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from inferline.backends.base import EngineLoad
from inferline.backends.pool import BackendState
from inferline.config import AdmissionConfig, BackendKind, KVAccounting, QueuePolicy
from inferline.errors import QueueFull, QueueTimeout
from inferline.gateway.queue import ModelQueue
from inferline.gateway.saturation import has_room
from inferline.metrics import GatewayMetrics


class _Backend:
    def __init__(self, name: str, seqs: int = 1, kind: BackendKind = BackendKind.VLLM) -> None:
        self.name, self.max_num_seqs, self.kind, self.kv_admit_ratio = name, seqs, kind, 0.85
        self.kv_capacity_tokens: int | None = None


def _state(seqs: int = 1, kv: float = 0.0, running: int = 0, age_s: float = 0.0) -> BackendState:
    b: Any = _Backend("e0", seqs)
    load = EngineLoad(running, 0, kv, time.monotonic() - age_s)
    return BackendState(backend=b, model="m", healthy=True, load=load)


class _First:
    def pick(self, room: list[BackendState], now: float, affinity: bytes | None) -> BackendState | None:
        return room[0] if room else None


def _queue(state: BackendState, **cfg: Any) -> ModelQueue:
    return ModelQueue("m", [state], AdmissionConfig(**cfg), 2.0, GatewayMetrics().for_model("m"), _First())


def test_room_needs_fresh_load_free_seqs_and_kv_below_threshold() -> None:
    now = time.monotonic()
    assert has_room(_state(seqs=2, running=1), now, 2.0)
    assert not has_room(_state(seqs=2, running=2), now, 2.0)
    assert not has_room(_state(seqs=2, kv=0.9), now, 2.0), "KV above 0.85"
    assert not has_room(_state(seqs=2, age_s=10), now, 2.0), "stale load = saturated"
    burst = _state(seqs=2)
    burst.dispatched_since_poll = 2
    assert not has_room(burst, now, 2.0), "what we dispatched since the poll counts"
    burst.completed_since_poll = 1
    assert has_room(burst, now, 2.0), "and what finished since frees room"


async def test_shortest_budget_first_and_aging_bounds_the_wait() -> None:
    state = _state(seqs=1)
    q = _queue(state, aging_tokens_per_s=100.0)
    held = await q.acquire(q.key(10, 0, time.monotonic()))  # takes the only slot
    now = time.monotonic()
    order: list[str] = []

    async def wait(name: str, key: float) -> None:
        got = await q.acquire(key)
        order.append(name)
        q.release(got)

    tasks = [
        asyncio.create_task(wait("long-early", q.key(1000, 0, now))),  # arrived 5 s "earlier" than short
        asyncio.create_task(wait("short", q.key(50, 0, now + 5))),
        asyncio.create_task(wait("long-late", q.key(1000, 0, now + 5))),
        asyncio.create_task(wait("batch-short", q.key(50, 60, now))),
    ]
    await asyncio.sleep(0.01)
    assert len(q) == 4
    q.release(held)
    await asyncio.gather(*tasks)
    # short (key now+5.5) beats long-late (now+15) but not long-early (now+10 > now+5.5? no: 10 > 5.5)
    assert order == ["short", "long-early", "long-late", "batch-short"]


async def test_fcfs_policy_keeps_arrival_order() -> None:
    state = _state(seqs=1)
    q = _queue(state, policy=QueuePolicy.FCFS)
    held = await q.acquire(q.key(1, 0, time.monotonic()))
    order: list[int] = []

    async def wait(i: int, cost: int) -> None:
        got = await q.acquire(q.key(cost, 0, time.monotonic()))
        order.append(i)
        q.release(got)

    tasks = []
    for i, cost in enumerate([5000, 10, 300]):
        tasks.append(asyncio.create_task(wait(i, cost)))
        await asyncio.sleep(0.002)
    q.release(held)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]


async def test_full_queue_and_deadline_answer_429_with_retry_after() -> None:
    state = _state(seqs=1)
    q = _queue(state, queue_max_depth=1, queue_timeout_s=0.2)
    held = await q.acquire(0.0)
    waiter = asyncio.create_task(q.acquire(1.0))
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull) as full:
        await q.acquire(2.0)
    assert full.value.retry_after_s is not None and full.value.retry_after_s >= 1
    started = time.monotonic()
    with pytest.raises(QueueTimeout):
        await waiter
    assert time.monotonic() - started < 0.5
    assert len(q) == 0
    q.release(held)
    assert state.in_flight == 0


async def test_cancelled_waiter_never_leaks_a_slot() -> None:
    state = _state(seqs=1)
    q = _queue(state)
    held = await q.acquire(0.0)
    waiter = asyncio.create_task(q.acquire(1.0))
    await asyncio.sleep(0.01)
    q.release(held)  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs: the slot must come back
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert state.in_flight == 0


def test_half_open_circuit_allows_one_trial_at_a_time() -> None:
    state = _state(seqs=4)
    state.eject_after_failures = 2
    state.consecutive_failures = 2  # cool-down over (ejected_until in the past), failures not cleared
    now = time.monotonic()
    assert state.circuit(now) == "half_open"
    assert has_room(state, now, 2.0)
    state.in_flight = 1
    assert not has_room(state, now, 2.0), "a trial is in flight"
    state.in_flight = 0
    state.record_success()
    assert state.circuit(now) == "closed"


def test_our_requests_at_full_length_must_fit_under_the_kv_threshold() -> None:
    state = _state(seqs=8)
    state.backend.kv_capacity_tokens = 1000  # threshold 0.85 -> 850 tokens
    now = time.monotonic()
    full = KVAccounting.FULL
    assert has_room(state, now, 2.0, kv_tokens=900, accounting=full), "an idle engine always takes one request"
    state.in_flight, state.reserved_kv_tokens = 1, 500
    assert has_room(state, now, 2.0, kv_tokens=300, accounting=full)
    assert not has_room(state, now, 2.0, kv_tokens=400, accounting=full), "500 + 400 would grow past 850"
