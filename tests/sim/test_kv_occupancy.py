"""The simulator's ground truth for KV-cache fragmentation: allocated blocks vs the tokens they really hold."""

from __future__ import annotations

import random

import pytest

from inferline.sim.profiles import Profile
from inferline.sim.scheduler import RequestState, Scheduler, SchedulingPolicy, SimRequest

BS = 16
SMALL = Profile(
    name="small",
    description="test",
    max_model_len=4096,
    max_num_seqs=6,
    kv_blocks=40,  # 640 tokens: a mixed workload preempts
    max_num_batched_tokens=96,  # long prompts are prefilled in chunks
    step_base_s=0.010,
    decode_seq_s=0.001,
    kv_token_s=0.0,
    prefill_token_s=0.0001,
)


def test_idle_cache_has_no_fragmentation() -> None:
    occ = Scheduler(SMALL).kv_occupancy()
    assert (occ.allocated_tokens, occ.live_tokens, occ.fragmentation_ratio) == (0, 0, 0.0)
    assert occ.capacity_tokens == 40 * BS


def test_a_short_sequence_wastes_the_rest_of_its_last_block() -> None:
    s = Scheduler(SMALL)
    r = SimRequest("a", prompt_tokens=20, max_tokens=5, output_len=5)
    s.add(r)
    step = s.schedule(0.0)
    # Mid-step: 2 blocks (32 tokens) allocated for the 20 prompt tokens being computed.
    occ = s.kv_occupancy()
    assert (occ.allocated_tokens, occ.live_tokens) == (32, 20)
    assert occ.fragmentation_ratio == pytest.approx(12 / 640)
    s.complete(step, 0.0)
    # Between steps: 20 computed, the first output token sampled but not yet in the cache.
    assert (s.kv_occupancy().allocated_tokens, s.kv_occupancy().live_tokens) == (32, 20)
    s.complete(s.schedule(0.0), 0.0)  # decode step: 21 tokens live
    assert s.kv_occupancy().live_tokens == 21


def test_finished_and_preempted_requests_hold_nothing() -> None:
    s = Scheduler(SMALL)
    r = SimRequest("a", prompt_tokens=20, max_tokens=2, output_len=2)
    s.add(r)
    while s.has_work:
        s.complete(s.schedule(0.0), 0.0)
    assert r.state is RequestState.FINISHED
    assert s.kv_occupancy().allocated_tokens == 0


def _check(s: Scheduler) -> None:
    occ = s.kv_occupancy()
    assert occ.allocated_tokens == round(s.kv_usage_ratio * occ.capacity_tokens)
    assert 0 <= occ.live_tokens <= occ.allocated_tokens
    # Paged blocks waste at most the unfilled tail of each running sequence's last block.
    assert occ.wasted_tokens <= len(s.running) * (BS - 1)
    assert 0.0 <= occ.fragmentation_ratio <= s.kv_usage_ratio + 1e-12


@pytest.mark.parametrize("prefix_caching", [False, True])
@pytest.mark.parametrize("policy", [SchedulingPolicy.FCFS, SchedulingPolicy.PRIORITY])
def test_truth_is_consistent_under_mixed_lengths_preemption_and_prefix_sharing(
    prefix_caching: bool, policy: SchedulingPolicy
) -> None:
    rng = random.Random(7)
    s = Scheduler(SMALL, policy, prefix_caching=prefix_caching)
    groups = [tuple(hash(("g", g, i)) for i in range(6)) for g in range(3)]
    pending = []
    for i in range(60):
        prompt = rng.choice([3, 17, 40, 100, 200])
        out = rng.choice([1, 4, 30, 90])
        full = prompt // BS
        shared = groups[i % 3][: min(full, 6)] if prefix_caching else ()
        own = tuple(hash(("u", i, j)) for j in range(len(shared), full)) if prefix_caching else ()
        pending.append(SimRequest(f"r{i}", prompt, out, out, priority=rng.randint(0, 3), block_hashes=shared + own))
    steps = 0
    while pending or s.has_work:
        for _ in range(rng.randint(0, 3)):
            if pending:
                s.add(pending.pop())
        step = s.schedule(0.0)
        _check(s)
        s.complete(step, 0.0)
        _check(s)
        if rng.random() < 0.03 and s.running:  # a client goes away mid-generation
            s.abort(rng.choice(s.running))
            _check(s)
        steps += 1
        assert steps < 20_000
    assert s.num_preemptions > 0  # the workload really exercised preemption
    assert s.kv_occupancy().allocated_tokens == 0
