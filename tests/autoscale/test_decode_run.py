"""Scheduler.decode_run / apply_decode_run: a jump over pure-decode steps ends exactly where the steps would."""

from __future__ import annotations

import random

import pytest

from inferline.sim.profiles import CPU_SMOLLM2, H100_LLAMA8B, Profile
from inferline.sim.scheduler import Scheduler, SimRequest


def _fill(profile: Profile, seed: int, n: int) -> tuple[Scheduler, float]:
    """A scheduler with N requests admitted and prefilled (stepped until none is prefilling)."""
    rng = random.Random(seed)
    s = Scheduler(profile)
    for i in range(n):
        out = rng.randint(2, 300)
        s.add(SimRequest(str(i), rng.randint(1, 900), out + rng.randint(0, 50), out))
    now = 0.0
    while s.has_work and s.decode_run() is None:
        step = s.schedule(now)
        now += step.duration_s
        s.complete(step, now)
    return s, now


def _snapshot(s: Scheduler) -> list[tuple[object, ...]]:
    return [(r.request_id, r.num_computed, r.num_output, r.num_blocks, r.state, r.finish_reason) for r in s.running] + [
        (s.free_blocks, len(s.running), len(s.waiting))
    ]


@pytest.mark.parametrize("profile", [H100_LLAMA8B, CPU_SMOLLM2], ids=lambda p: p.name)
@pytest.mark.parametrize("seed", range(6))
def test_decode_run_equals_the_steps_it_replaces(profile: Profile, seed: int) -> None:
    n = profile.max_num_seqs if seed % 2 else min(profile.max_num_seqs, 3 + seed)
    a, t0 = _fill(profile, seed, n)
    b, _ = _fill(profile, seed, n)
    run = a.decode_run()
    if run is None:
        pytest.skip("no pure-decode stretch in this draw")
    for k in sorted({1, run.steps // 2 or 1, run.steps}):
        a, t0 = _fill(profile, seed, n)
        b, _ = _fill(profile, seed, n)
        run = a.decode_run()
        assert run is not None
        finished_a = a.apply_decode_run(k, t0 + run.elapsed_s(k))
        now = t0
        finished_b = []
        for _ in range(k):
            step = b.schedule(now)
            assert step.prefill_tokens == 0 and step.decode_seqs == run.seqs and not step.preempted
            now += step.duration_s
            finished_b += [r for r in b.complete(step, now) if r.finish_s == now and r.finish_reason]
        assert now == pytest.approx(t0 + run.elapsed_s(k), rel=1e-12)
        assert _snapshot(a) == _snapshot(b)
        assert [r.request_id for r in finished_a] == [r.request_id for r in finished_b]
        if k < run.steps:
            assert not finished_a  # nothing finishes before the run's last step


def test_steps_within_inverts_elapsed() -> None:
    s, _ = _fill(H100_LLAMA8B, 1, 64)
    run = s.decode_run()
    assert run is not None
    for j in range(run.steps + 1):
        assert run.steps_within(run.elapsed_s(j)) == j
        if j:
            assert run.steps_within(run.elapsed_s(j) - 1e-9) == j - 1


def test_no_run_while_a_request_waits_for_a_free_slot_or_prefills() -> None:
    s = Scheduler(H100_LLAMA8B)
    s.add(SimRequest("a", 100, 10, 10))
    assert s.decode_run() is None  # waiting, not admitted yet
    step = s.schedule(0.0)
    s.complete(step, step.duration_s)
    assert s.decode_run() is not None
    s.add(SimRequest("b", 100, 10, 10))
    assert s.decode_run() is None  # the next step admits b
