"""Prefix caching: block hashes of prompts, hits that skip prefill, shared blocks, eviction, metrics."""

from __future__ import annotations

import random
from dataclasses import replace

import aiohttp
import orjson
import pytest

from inferline.sim import SimFleet
from inferline.sim.prefix_cache import PrefixCache, hash_blocks
from inferline.sim.profiles import Profile
from inferline.sim.scheduler import RequestState, Scheduler, SimRequest, run_virtual
from inferline.sim.wire import parse_completion

from .conftest import metric, scrape

BS = 16
PROFILE = Profile(
    name="pc",
    description="test",
    max_model_len=4096,
    max_num_seqs=4,
    kv_blocks=64,
    max_num_batched_tokens=4096,
    step_base_s=0.010,
    decode_seq_s=0.001,
    kv_token_s=0.0,
    prefill_token_s=0.001,
)


def hashes(prefix: int, n_blocks: int, unique: int) -> tuple[int, ...]:
    """Chained block hashes of a prompt: N_BLOCKS shared with every prompt of PREFIX, then UNIQUE ones."""
    out, h = [], 0
    for i in range(n_blocks + unique):
        h = hash((h, ("p", prefix, i) if i < n_blocks else ("u", random.random())))
        out.append(h)
    return tuple(out)


def req(name: str, block_hashes: tuple[int, ...], out: int = 4) -> SimRequest:
    prompt = len(block_hashes) * BS + 5  # a partial last block: never hashed
    return SimRequest(name, prompt, out, out, block_hashes=block_hashes)


def drain(s: Scheduler) -> None:
    while s.has_work:
        s.complete(s.schedule(0.0), 0.0)


def test_second_request_hits_the_shared_prefix_and_prefills_only_the_rest() -> None:
    s = Scheduler(PROFILE, prefix_caching=True)
    a = req("a", hashes(1, 10, 2))
    s.add(a)
    first = s.schedule(0.0)
    assert first.prefill_tokens == a.prompt_tokens and first.cache_hits == 0
    assert first.cache_queries == a.prompt_tokens
    s.complete(first, 0.0)
    drain(s)
    b = req("b", hashes(1, 10, 3))
    s.add(b)
    second = s.schedule(0.0)
    assert b.num_cached_tokens == 10 * BS
    assert second.cache_hits == 10 * BS and second.cache_queries == b.prompt_tokens
    assert second.prefill_tokens == b.prompt_tokens - 10 * BS
    assert second.duration_s < first.duration_s
    drain(s)
    cache = s.prefix_cache
    assert cache is not None
    assert (cache.queries_tokens, cache.hits_tokens) == (a.prompt_tokens + b.prompt_tokens, 10 * BS)


def test_same_prefix_different_group_misses() -> None:
    s = Scheduler(PROFILE, prefix_caching=True)
    s.add(req("a", hashes(1, 10, 0)))
    drain(s)
    b = req("b", hashes(2, 10, 0))
    s.add(b)
    drain(s)
    assert b.num_cached_tokens == 0


def test_fully_cached_prompt_still_computes_its_last_token() -> None:
    s = Scheduler(PROFILE, prefix_caching=True)
    h = hashes(1, 8, 0)
    a = SimRequest("a", 8 * BS, 2, 2, block_hashes=h)  # the prompt is exactly 8 full blocks
    s.add(a)
    drain(s)
    b = SimRequest("b", 8 * BS, 2, 2, block_hashes=h)
    s.add(b)
    step = s.schedule(0.0)
    assert b.num_cached_tokens == 7 * BS  # the last block is recomputed, as in vLLM
    assert step.prefill_tokens == BS


def test_running_requests_share_cached_blocks_in_the_kv_cache() -> None:
    shared = hashes(1, 20, 0)
    with_cache = Scheduler(PROFILE, prefix_caching=True)
    without = Scheduler(PROFILE)
    a = req("a", shared, out=50)
    with_cache.add(a)
    with_cache.complete(with_cache.schedule(0.0), 0.0)  # a's prompt is computed and hashed
    b = req("b", shared, out=50)
    with_cache.add(b)
    with_cache.complete(with_cache.schedule(0.0), 0.0)
    for r in (req("a", shared, out=50), req("b", shared, out=50)):
        without.add(r)
    without.complete(without.schedule(0.0), 0.0)
    # both hold 20 shared blocks + their own partial block; without caching each holds 21
    assert without.total_blocks - without.free_blocks == 42
    assert with_cache.total_blocks - with_cache.free_blocks == 20 + 2
    assert a.state is b.state is RequestState.RUNNING


@pytest.mark.parametrize("kv_blocks", [64, 28])
def test_blocks_are_conserved_and_old_prefixes_evicted_under_pressure(kv_blocks: int) -> None:
    random.seed(1)
    s = Scheduler(replace(PROFILE, kv_blocks=kv_blocks), prefix_caching=True)
    cache = s.prefix_cache
    assert cache is not None
    arrivals = []
    for i in range(200):
        group = random.randrange(12)  # 12 prefixes x 8 blocks: more than 64 blocks can keep
        arrivals.append((i * 0.01, req(f"r{i}", hashes(group, 8, random.randrange(3)), out=random.randint(1, 40))))
    seen_free = []
    orig_complete = s.complete

    def complete(step, now):  # type: ignore[no-untyped-def]
        out = orig_complete(step, now)
        assert 0 <= s.free_blocks <= s.total_blocks
        assert cache.free_cached <= s.free_blocks  # free cached blocks live in free blocks
        held = sum(r.num_blocks for r in s.running) + cache.in_use
        assert held == s.total_blocks - s.free_blocks
        seen_free.append(s.free_blocks)
        return out

    s.complete = complete  # type: ignore[method-assign]
    run_virtual(s, arrivals)
    assert all(r.state is RequestState.FINISHED for _, r in arrivals)
    assert s.free_blocks == s.total_blocks and cache.in_use == 0
    assert 0 < cache.hits_tokens < cache.queries_tokens
    assert len(cache) <= s.total_blocks
    assert any(r.num_cached_tokens == 0 for _, r in arrivals[50:])  # evicted prefixes miss again
    if kv_blocks < 40:  # 4 slots x ~13 blocks do not fit: preempted requests free shared blocks and re-hit them
        assert s.num_preemptions > 0


def test_lru_evicts_least_recently_freed_and_a_prefix_tail_first() -> None:
    c = PrefixCache()
    a = [c.add(h) for h in (1, 2, 3)]
    assert a == [0, 0, 0] and c.in_use == 3
    assert c.release([1, 2, 3]) == 3  # freed tail first: 3, 2, 1
    c.evict_to(2)
    assert 3 not in c and 1 in c and 2 in c
    assert c.match([1, 2, 3], 3) == 2


def test_chat_prompts_sharing_a_system_message_share_leading_block_hashes() -> None:
    system = "You are a helpful assistant. " * 40

    def call(user: str) -> tuple[int, ...]:
        body = orjson.dumps(
            {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}], "max_tokens": 4}
        )
        parsed = parse_completion(body, chat=True, served_model="m", max_model_len=4096, priority_enabled=False,
                                  block_tokens=BS)  # fmt: skip
        return parsed.block_hashes

    a, b = call("first question " * 30), call("another one " * 30)
    shared = len(system) // (BS * 4)
    assert a[:shared] == b[:shared] and a[shared + 1 :] != b[shared + 1 :]
    off = parse_completion(b'{"prompt": "x"}', chat=False, served_model="m", max_model_len=64, priority_enabled=False)
    assert off.block_hashes == ()
    assert hash_blocks("a" * 130, 64, 10) == hash_blocks("a" * 128 + "zz", 64, 10)


async def test_metrics_count_prefix_cache_queries_and_hits_in_tokens() -> None:
    system = "Answer briefly and cite the manual. " * 60
    body = {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "What is a fox?"}],
        "max_tokens": 3,
    }
    async with SimFleet("instant", prefix_caching=True) as fleet, aiohttp.ClientSession() as http:
        url = fleet.urls[0]
        for _ in range(2):
            async with http.post(url + "/v1/chat/completions", json=body) as resp:
                prompt = (await resp.json())["usage"]["prompt_tokens"]
        text = await scrape(http, url)
        queries = metric(text, "vllm:prefix_cache_queries_total")
        hits = metric(text, "vllm:prefix_cache_hits_total")
        assert queries == 2 * prompt
        assert hits % BS == 0 and len(system) // 4 - BS <= hits < prompt
    async with SimFleet("instant") as fleet, aiohttp.ClientSession() as http:  # off: counters stay at 0
        async with http.post(fleet.urls[0] + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
        text = await scrape(http, fleet.urls[0])
        assert metric(text, "vllm:prefix_cache_queries_total") == 0
