"""Backend scoring and ejection: unknown load never looks idle; failures eject for a cool-down."""

from __future__ import annotations

import time
from typing import Any

from inferline.backends.base import EngineLoad
from inferline.backends.pool import BackendState
from inferline.backends.prom_text import sum_by_name
from inferline.config import RoutingConfig


class _FakeBackend:
    """Only the attributes scoring reads; the pool's HTTP side is tested against real engines."""

    def __init__(self, name: str, max_num_seqs: int = 8) -> None:
        self.name = name
        self.max_num_seqs = max_num_seqs


def _state(name: str, load: EngineLoad | None = None, in_flight: int = 0) -> BackendState:
    b: Any = _FakeBackend(name)
    return BackendState(backend=b, model="m", healthy=True, load=load, in_flight=in_flight)


def test_stale_or_missing_load_scores_as_busy_not_idle() -> None:
    now = time.monotonic()
    idle = _state("idle", EngineLoad(0, 0, 0.0, now))
    stale = _state("stale", EngineLoad(0, 0, 0.0, now - 60))
    unknown = _state("unknown")
    assert idle.score(now, 2.0) < stale.score(now, 2.0)
    assert stale.score(now, 2.0) == unknown.score(now, 2.0) >= 1.0


def test_score_uses_kv_and_queue_and_local_in_flight() -> None:
    now = time.monotonic()
    kv_heavy = _state("kv", EngineLoad(1, 0, 0.9, now))
    queued = _state("q", EngineLoad(8, 4, 0.2, now))
    light = _state("light", EngineLoad(1, 0, 0.1, now))
    assert light.score(now, 2) < kv_heavy.score(now, 2) < queued.score(now, 2)
    # between polls the engine cannot have fewer requests than we sent it
    burst = _state("burst", EngineLoad(0, 0, 0.0, now), in_flight=6)
    assert burst.score(now, 2) > light.score(now, 2)


def test_consecutive_failures_eject_for_the_cooldown() -> None:
    s, other = _state("a"), _state("b")
    s.siblings = other.siblings = [s, other]
    routing = RoutingConfig(eject_after_failures=2, eject_cooldown_s=5)
    s.record_failure("boom", routing)
    assert s.ready(time.monotonic())
    s.record_failure("boom", routing)
    assert not s.ready(time.monotonic())
    assert s.ready(time.monotonic() + 6)
    s.record_success()
    assert s.consecutive_failures == 0


def test_the_last_ready_backend_is_never_ejected_but_goes_half_open() -> None:
    s = _state("only")
    s.siblings = [s]
    routing = RoutingConfig(eject_after_failures=2, eject_cooldown_s=5)
    for _ in range(3):
        s.record_failure("reset", routing)
    now = time.monotonic()
    assert s.ready(now), "a transient error must not turn into an outage of the whole model"
    assert s.circuit(now) == "half_open"
    s.record_success()
    assert s.circuit(now) == "closed"


def test_prometheus_text_sums_across_label_sets() -> None:
    text = """# HELP vllm:num_requests_running x
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:num_requests_waiting 1
vllm:num_requests_running_other 9
"""
    wanted = frozenset({"vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:num_requests_waiting"})
    assert sum_by_name(text, wanted) == {
        "vllm:num_requests_running": 5.0,
        "vllm:kv_cache_usage_perc": 0.25,
        "vllm:num_requests_waiting": 1.0,
    }


def test_dispatches_since_the_last_poll_raise_the_score() -> None:
    now = time.monotonic()
    a, b = _state("a", EngineLoad(0, 0, 0.10, now)), _state("b", EngineLoad(0, 0, 0.15, now))
    assert a.score(now, 2) < b.score(now, 2)
    a.dispatched_since_poll = 2  # two requests sent to `a` since its last reading (8 seqs)
    assert a.score(now, 2) > b.score(now, 2), "the next request goes to b instead of herding onto a"
