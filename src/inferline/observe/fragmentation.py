"""Estimate an engine's KV-cache fragmentation from its load reading and the gateway's in-flight sequences.

No engine exports fragmentation, so the gateway computes it (docs/observability.md, "Cache fragmentation"):

    fragmentation_ratio = (allocated_tokens - live_tokens) / capacity_tokens        clamped to [0, 1]

- `allocated_tokens`: KV space the engine has handed out. Paged engines (vLLM): kv_cache_usage_ratio x
  capacity (the gauge counts whole blocks in use). Per-slot engines (llama.cpp): busy slots x context
  reserved per slot (a slot's whole context is set aside the moment it takes a request).
- `live_tokens`: tokens whose KV those allocations really hold. Paged: the sum of prompt + generated
  tokens of the sequences that hold blocks, a shared prompt prefix counted once (only its full blocks
  are shared). Per-slot: the engine's own token count (the gateway derives llama.cpp's usage from /slots)
  when given, else the sequences' tokens.
- `capacity_tokens`: the whole KV cache. Dividing by capacity, not by what is allocated, makes the figure
  read "this share of the cache is lost": 0 on an idle engine, never above kv_cache_usage_ratio, and a
  lone short request cannot make it look alarming.

Which sequences hold blocks: the engine's `running` count says how many; under FCFS the oldest dispatched
run and the newest wait (or were preempted, which frees their blocks), so the first `running` of the
sequences, oldest first, are taken. When the engine runs more sequences than this gateway has on it,
other clients (other gateway replicas) hold the rest: their sequences are assumed to look like ours
(live tokens scaled by running / ours). With none of ours on a busy engine the figure is unknowable: None.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["InFlightSequence", "KvReading", "estimate_fragmentation"]


@dataclass(frozen=True, slots=True)
class KvReading:
    """One load reading of one engine, and what the gateway knows of its KV-cache layout."""

    usage_ratio: float | None  # the engine's KV use 0-1 (vllm:kv_cache_usage_perc); None: unknown
    capacity_tokens: int | None  # KV cache size in tokens (vllm:cache_config_info, llama.cpp slots x n_ctx)
    block_size: int | None = None  # paged engines: tokens per block (vllm:cache_config_info); None: unknown
    running: int | None = None  # sequences the engine runs now (vllm:num_requests_running); None: unknown
    slot_tokens: int | None = None  # per-slot engines (llama.cpp): context reserved per slot; None: paged


@dataclass(frozen=True, slots=True)
class InFlightSequence:
    """One of this gateway's requests on the engine: its tokens so far and the prompt prefix it shares.

    `prefix_key`: sequences with the same key share their first `prefix_tokens` prompt tokens (same system
    prompt, same conversation so far). Give a key only when the engine caches prefixes (vLLM V1 does by
    default), since otherwise each sequence stores its own copy. Sharing starts once the prefix has been
    computed: sequences admitted together into a cold cache each compute their own copy and give it back
    only when their prefill completes. So a group shares only when one of its members has `started`.
    """

    tokens: int  # prompt tokens + tokens generated so far
    prefix_key: Hashable | None = None
    prefix_tokens: int = 0
    started: bool = True  # its first token has arrived, so the engine has computed (and cached) its prompt


def estimate_fragmentation(reading: KvReading, sequences: Sequence[InFlightSequence]) -> float | None:
    """The engine's fragmentation ratio (0-1), or None when it cannot be computed from what is known.

    SEQUENCES are this gateway's requests in flight on the engine, oldest dispatched first.
    """
    capacity = reading.capacity_tokens
    if not capacity or capacity <= 0:
        return None
    if reading.slot_tokens is not None:
        return _per_slot(reading, sequences, capacity)
    usage = reading.usage_ratio
    if usage is None or usage != usage:  # unknown or NaN (stale)
        return None
    allocated = min(1.0, max(0.0, usage)) * capacity
    if allocated <= 0:
        return 0.0
    holders = list(sequences)
    running = reading.running
    scale = 1.0
    if running is not None:
        if running < len(holders):
            holders = holders[: max(0, running)]
        elif running > len(holders):
            if not holders:
                return None  # the engine's KV is held by sequences we know nothing about
            scale = running / len(holders)
    live = _live_tokens(holders, reading.block_size) * scale
    return _clamp((allocated - live) / capacity)


def _per_slot(reading: KvReading, sequences: Sequence[InFlightSequence], capacity: int) -> float | None:
    slot = reading.slot_tokens
    assert slot is not None
    busy = reading.running if reading.running is not None else len(sequences)
    allocated = min(capacity, busy * slot)
    if allocated <= 0:
        return 0.0
    usage = reading.usage_ratio
    if usage is not None and usage == usage:
        live = usage * capacity  # llama.cpp's usage as the gateway derives it: tokens held in busy slots
    else:
        # A slot holds its own sequence only (no prefix sharing across slots); at most one slot's context each.
        live = float(sum(min(s.tokens, slot) for s in sequences[:busy]))
    return _clamp((allocated - live) / capacity)


def _live_tokens(holders: Sequence[InFlightSequence], block_size: int | None) -> float:
    """Tokens the holders store, a shared prefix once: a group of k stores k-1 fewer copies of its full blocks."""
    total = sum(max(0, s.tokens) for s in holders)
    groups: dict[Hashable, list[int]] = {}
    warm: set[Hashable] = set()  # groups whose prefix is computed: a member has its first token
    for s in holders:
        if s.prefix_key is not None and s.prefix_tokens > 0:
            groups.setdefault(s.prefix_key, []).append(min(s.prefix_tokens, s.tokens))
            if s.started:
                warm.add(s.prefix_key)
    for key, shared in groups.items():
        if len(shared) < 2 or key not in warm:
            continue
        common = min(shared)  # every member shares at least this much
        if block_size:
            common = common // block_size * block_size  # only full blocks are shared (hashed)
        total -= (len(shared) - 1) * max(0, common)
    return float(total)


def _clamp(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x
