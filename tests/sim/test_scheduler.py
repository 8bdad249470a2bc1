"""The engine model without a clock: queueing, KV blocks, chunked prefill, preemption, priority, step time."""

from __future__ import annotations

import pytest

from inferline.sim.profiles import CPU_SMOLLM2, H100_LLAMA8B, INSTANT, Profile, get_profile
from inferline.sim.scheduler import RequestState, Scheduler, SchedulingPolicy, SimRequest, run_virtual

TINY = Profile(
    name="tiny",
    description="test",
    max_model_len=4096,
    max_num_seqs=2,
    kv_blocks=64,
    max_num_batched_tokens=64,
    step_base_s=0.010,
    decode_seq_s=0.001,
    kv_token_s=0.0,
    prefill_token_s=0.0001,
)


def req(n: int, prompt: int = 10, out: int = 5, priority: int = 0) -> SimRequest:
    return SimRequest(f"r{n}", prompt_tokens=prompt, max_tokens=out, output_len=out, priority=priority)


def test_third_request_waits_for_a_slot_and_starts_when_one_finishes() -> None:
    s = Scheduler(TINY)
    a, b, c = req(1, out=3), req(2, out=6), req(3, out=2)
    for r in (a, b, c):
        s.add(r)
    s.complete(s.schedule(0.0), 0.0)
    assert [r.state for r in (a, b, c)] == [RequestState.RUNNING, RequestState.RUNNING, RequestState.WAITING]
    assert len(s.waiting) == 1
    while a.state is RequestState.RUNNING:
        assert c.state is RequestState.WAITING
        s.complete(s.schedule(0.0), 0.0)
    step = s.schedule(0.0)  # a's slot is free: c is admitted in the very next step
    assert c.state is RequestState.RUNNING and any(r is c for r, _ in step.work)


def test_chunked_prefill_respects_the_token_budget() -> None:
    s = Scheduler(TINY)
    long = req(1, prompt=150, out=2)
    s.add(long)
    chunks = []
    while long.num_output == 0:
        step = s.schedule(0.0)
        chunks.append(step.prefill_tokens)
        s.complete(step, 0.0)
    assert chunks == [64, 64, 22]
    assert long.num_blocks == -(-151 // 16)


def test_kv_exhaustion_preempts_newest_and_every_request_completes() -> None:
    profile = Profile(
        name="kv",
        description="test",
        max_model_len=4096,
        max_num_seqs=4,
        kv_blocks=8,
        max_num_batched_tokens=512,
        step_base_s=0.01,
        decode_seq_s=0.0,
        kv_token_s=0.0,
        prefill_token_s=0.0,
    )
    s = Scheduler(profile)
    s.trace = []
    reqs = [req(i, prompt=10, out=40) for i in range(4)]
    run_virtual(s, [(0.0, r) for r in reqs])
    assert s.num_preemptions > 0
    assert all(r.state is RequestState.FINISHED and r.num_output == 40 for r in reqs)
    assert s.free_blocks == 8 and not s.running and len(s.waiting) == 0
    first = next(e for e in s.trace if e.startswith("preempt"))
    assert first == "preempt 4"  # fcfs: the newest running request goes back to the queue


def test_priority_policy_runs_lower_value_first_ties_by_arrival() -> None:
    s = Scheduler(TINY.with_overrides(max_num_seqs=1), SchedulingPolicy.PRIORITY)
    s.trace = []
    reqs = [req(1, priority=5), req(2, priority=1), req(3, priority=3), req(4, priority=1)]
    run_virtual(s, [(0.0, r) for r in reqs])
    admitted = [e for e in s.trace if e.startswith("admit")]
    assert admitted == ["admit 2", "admit 4", "admit 3", "admit 1"]


def test_priority_preemption_evicts_the_least_urgent() -> None:
    profile = TINY.with_overrides(max_num_seqs=3, kv_blocks=6)
    s = Scheduler(profile, SchedulingPolicy.PRIORITY)
    s.trace = []
    urgent, meh, lazy = req(1, prompt=16, out=40, priority=0), req(2, 16, 40, 1), req(3, 16, 40, 9)
    run_virtual(s, [(0.0, lazy), (0.0, urgent), (0.0, meh)])
    preempted = {e.split()[1] for e in s.trace if e.startswith("preempt")}
    assert preempted and str(urgent.seq) not in preempted
    assert all(r.state is RequestState.FINISHED for r in (urgent, meh, lazy))


def test_abort_frees_slot_and_blocks_at_once() -> None:
    s = Scheduler(TINY)
    a, b, c = req(1, out=50), req(2, out=50), req(3, out=50)
    for r in (a, b, c):
        s.add(r)
    s.complete(s.schedule(0.0), 0.0)
    used = TINY.kv_blocks - s.free_blocks
    assert s.abort(a) and s.abort(c)
    assert len(s.running) == 1 and len(s.waiting) == 0
    assert TINY.kv_blocks - s.free_blocks == used - 1  # a held one block (11 tokens); c held none
    assert not s.abort(a)  # idempotent


def test_step_time_formula() -> None:
    s = Scheduler(TINY)
    a, b = req(1, prompt=20, out=3), req(2, prompt=30, out=3)
    s.add(a)
    s.add(b)
    first = s.schedule(0.0)
    assert first.prefill_tokens == 50 and first.decode_seqs == 0
    assert first.duration_s == pytest.approx(0.010 + 50 * 0.0001)
    s.complete(first, 0.0)
    second = s.schedule(0.0)
    assert second.decode_seqs == 2 and second.prefill_tokens == 0
    assert second.duration_s == pytest.approx(0.010 + 2 * 0.001)


def test_same_arrivals_give_the_same_schedule() -> None:
    def run() -> list[str]:
        s = Scheduler(TINY.with_overrides(kv_blocks=12), SchedulingPolicy.FCFS)
        s.trace = []
        run_virtual(s, [(i * 0.003, req(i, prompt=5 + 7 * i, out=10 + i)) for i in range(8)])
        return s.trace

    assert run() == run()


def test_profiles_match_their_sources() -> None:
    # cpu-smollm2: ~110 tok/s one stream, ~190 tok/s total at 8 streams, ~365 prompt tok/s
    # (benchmarks/calibrate_sim.py against the real engine, 2026-11-28).
    cpu = get_profile("cpu-smollm2")
    assert 1 / cpu.step_s(1, 0, 0) == pytest.approx(110, rel=0.01)
    assert 8 / cpu.step_s(8, 0, 0) == pytest.approx(190, rel=0.01)
    assert 1 / cpu.prefill_token_s == pytest.approx(365)
    assert cpu.kv_tokens == 8 * 2048 and cpu.max_num_seqs == 8
    # h100-llama8b: ~10-12 ms/step at small batch, ~25-35 ms at batch 256, 10-20k prefill tok/s, ~450k KV.
    h100 = H100_LLAMA8B
    assert 0.010 <= h100.step_s(1, 1000, 0) <= 0.012
    assert 0.025 <= h100.step_s(256, 256 * 500, 0) <= 0.035
    assert 0.025 <= h100.step_s(256, 256 * 1000, 0) <= 0.035
    assert 10_000 <= 1 / h100.prefill_token_s <= 20_000
    assert 400_000 <= h100.kv_tokens <= 500_000
    assert INSTANT.step_s(100, 10**6, 10**6) == 0.0
    assert CPU_SMOLLM2 is cpu
    with pytest.raises(ValueError, match="known"):
        get_profile("nope")
