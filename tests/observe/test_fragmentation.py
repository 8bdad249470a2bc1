"""The gateway-side fragmentation estimator (observe/fragmentation.py), case by case."""

from __future__ import annotations

import math

import pytest

from inferline.observe.fragmentation import InFlightSequence, KvReading, estimate_fragmentation

CAP = 1024  # 64 blocks of 16


def seqs(*tokens: int) -> list[InFlightSequence]:
    return [InFlightSequence(t) for t in tokens]


def test_idle_engine_has_no_fragmentation() -> None:
    assert estimate_fragmentation(KvReading(0.0, CAP, 16, running=0), []) == 0.0


@pytest.mark.parametrize(
    "reading",
    [
        KvReading(None, CAP, 16),
        KvReading(math.nan, CAP, 16),
        KvReading(0.5, None, 16),
        KvReading(0.5, 0, 16),
    ],
)
def test_unknown_usage_or_capacity_gives_none(reading: KvReading) -> None:
    assert estimate_fragmentation(reading, seqs(10)) is None


def test_last_block_tails_are_the_waste() -> None:
    # Three sequences of 20, 5 and 33 tokens: 2 + 1 + 3 blocks = 96 tokens allocated, 58 live.
    reading = KvReading(96 / CAP, CAP, 16, running=3)
    assert estimate_fragmentation(reading, seqs(20, 5, 33)) == pytest.approx((96 - 58) / CAP)


def test_figure_never_exceeds_usage_and_is_clamped_at_zero() -> None:
    # The gateway counts a token more than the engine allocated (timing): never negative.
    assert estimate_fragmentation(KvReading(16 / CAP, CAP, 16, running=1), seqs(17)) == 0.0
    frac = estimate_fragmentation(KvReading(0.5, CAP, 16, running=1), seqs(1))
    assert frac is not None and frac <= 0.5


def test_only_the_running_sequences_hold_blocks_oldest_first() -> None:
    # Engine runs 2 of our 3 (the newest waits or was preempted: it holds nothing).
    reading = KvReading(64 / CAP, CAP, 16, running=2)
    with_all = estimate_fragmentation(KvReading(64 / CAP, CAP, 16), seqs(30, 30, 500))
    assert with_all == 0.0  # without the running count, the waiting one's 500 tokens hide the waste
    assert estimate_fragmentation(reading, seqs(30, 30, 500)) == pytest.approx(4 / CAP)


def test_a_busy_engine_with_none_of_ours_is_unknowable() -> None:
    assert estimate_fragmentation(KvReading(0.5, CAP, 16, running=4), []) is None


def test_other_clients_sequences_are_assumed_to_look_like_ours() -> None:
    # 4 running, 2 of them ours of 24 tokens each: the other two are taken as 24 tokens too.
    reading = KvReading(128 / CAP, CAP, 16, running=4)
    assert estimate_fragmentation(reading, seqs(24, 24)) == pytest.approx((128 - 96) / CAP)


def test_shared_prefix_full_blocks_are_stored_once() -> None:
    # 3 sequences sharing a 40-token system prompt (2 full blocks shared, 8 tokens in each one's own block),
    # 50 tokens each: blocks = 2 shared + 3 x 2 own = 8 blocks = 128 tokens.
    group = [InFlightSequence(50, prefix_key="sys", prefix_tokens=40) for _ in range(3)]
    reading = KvReading(128 / CAP, CAP, 16, running=3)
    live = 3 * 50 - 2 * 32
    assert estimate_fragmentation(reading, group) == pytest.approx((128 - live) / CAP)
    # Not telling the estimator about the sharing over-counts live tokens: it under-reads (to 0 here).
    assert estimate_fragmentation(reading, seqs(50, 50, 50)) == 0.0


def test_a_lone_sequence_of_a_group_shares_nothing() -> None:
    reading = KvReading(64 / CAP, CAP, 16, running=1)
    one = [InFlightSequence(50, prefix_key="sys", prefix_tokens=40)]
    assert estimate_fragmentation(reading, one) == pytest.approx(14 / CAP)


def test_per_slot_engine_wastes_the_unused_context_of_busy_slots() -> None:
    # llama.cpp: 8 slots x 2048; 4 busy holding 300 tokens each (usage = 1200 / 16384).
    cap = 8 * 2048
    reading = KvReading(1200 / cap, cap, running=4, slot_tokens=2048)
    assert estimate_fragmentation(reading, []) == pytest.approx((4 * 2048 - 1200) / cap)
    # Without the engine's usage, the sequences' tokens stand in.
    reading = KvReading(None, cap, running=4, slot_tokens=2048)
    assert estimate_fragmentation(reading, seqs(300, 300, 300, 300)) == pytest.approx((4 * 2048 - 1200) / cap)
    assert estimate_fragmentation(KvReading(0.0, cap, running=0, slot_tokens=2048), []) == 0.0


def test_a_cold_group_admitted_together_does_not_share_yet() -> None:
    # Three prompts of one group, none has a first token: each computes its own copy of the prefix.
    cold = [InFlightSequence(50, prefix_key="sys", prefix_tokens=40, started=False) for _ in range(3)]
    reading = KvReading(192 / CAP, CAP, 16, running=3)
    assert estimate_fragmentation(reading, cold) == pytest.approx((192 - 150) / CAP)
    # Once one has started, the prefix is cached and the others hit it.
    warm = [InFlightSequence(51, prefix_key="sys", prefix_tokens=40), *cold[1:]]
    assert estimate_fragmentation(KvReading(128 / CAP, CAP, 16, running=3), warm) == pytest.approx(
        (128 - (151 - 64)) / CAP
    )
