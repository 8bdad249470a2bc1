"""Overload end to end: a saturated (simulated) engine, a burst, and nothing lost.

The engine is `inferline sim` (a simulator, named so): two CPU cores cannot saturate a real engine in a
controlled way, the simulator can (max_num_seqs=2, ~10 ms per token like the embedded engine).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from support import Proc, sim_config, start_gateway, start_sim

QUEUE_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def saturated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc]]:
    tmp = tmp_path_factory.mktemp("admission")
    sim = start_sim(tmp, "--profile", "cpu-smollm2", "--max-num-seqs", "2")
    gw = start_gateway(
        tmp,
        {
            "routing": {"load_interval_s": 0.05},
            "admission": {"queue_max_depth": 3, "queue_timeout_s": QUEUE_TIMEOUT_S},
            "models": [
                {"name": "smollm2", "backends": [{"name": "sim-0", "kind": "vllm", "url": sim.url, "max_num_seqs": 2}]}
            ],
        },
    )
    yield sim, gw
    gw.stop()
    sim.stop()


async def test_burst_is_queued_then_rejected_with_retry_after_none_lost(saturated: tuple[Proc, Proc]) -> None:
    sim, gw = saturated
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 150}
    peak = 0.0
    done = False

    async def watch() -> None:
        nonlocal peak
        async with httpx.AsyncClient() as c:
            while not done:
                r = await c.get(sim.url + "/metrics")
                for line in r.text.splitlines():
                    if line.startswith("vllm:num_requests_running"):
                        peak = max(peak, float(line.rsplit(" ", 1)[1]))
                await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as client:
        results = await asyncio.gather(
            *(client.post(gw.base_url + "/chat/completions", json=body) for _ in range(10)), return_exceptions=True
        )
    elapsed = time.monotonic() - started
    done = True
    await watcher

    assert all(isinstance(r, httpx.Response) for r in results), results
    responses = [r for r in results if isinstance(r, httpx.Response)]
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    ok = [r for r in responses if r.status_code == 200]
    rejected = [r for r in responses if r.status_code == 429]
    assert len(ok) >= 2
    codes = {r.json()["error"]["code"] for r in rejected}
    assert "queue_full" in codes, "3 wait, the rest of the burst is turned away at once"
    for r in rejected:
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["message"]
    for r in ok:
        assert r.json()["usage"]["completion_tokens"] == 150
    assert elapsed < QUEUE_TIMEOUT_S + 10, "nobody waits past the queue deadline"
    assert peak <= 2, f"the engine never ran more than max_num_seqs: peak {peak}"
    async with httpx.AsyncClient() as c:
        queues = (await c.get(gw.url + "/queues")).json()["queues"]
    assert queues[0]["waiting"] == 0


def test_unknown_priority_class_is_400(saturated: tuple[Proc, Proc]) -> None:
    _, gw = saturated
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        headers={"x-inferline-priority": "urgent!!"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "x-inferline-priority"
    ok = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        headers={"x-inferline-priority": "batch"},
        timeout=30,
    )
    assert ok.status_code == 200


async def test_kv_cache_stays_under_the_admission_threshold(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The engine's KV gauge only shows what requests hold now; the gateway also counts what its requests
    will grow to (prompt + max_tokens against vllm:cache_config_info's capacity), so KV stays under 0.85."""
    tmp = tmp_path_factory.mktemp("kv")
    sim = start_sim(tmp, "--profile", "cpu-smollm2", "--time-scale", "0.2", "--kv-blocks", "40")  # 640 tokens
    gw = start_gateway(tmp, sim_config(sim.url, routing={"load_interval_s": 0.05}, admission={"queue_timeout_s": 60}))
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 150}
    peak_kv = 0.0
    done = False

    async def watch() -> None:
        nonlocal peak_kv
        async with httpx.AsyncClient() as c:
            while not done:
                for line in (await c.get(sim.url + "/metrics")).text.splitlines():
                    if line.startswith("vllm:kv_cache_usage_perc"):
                        peak_kv = max(peak_kv, float(line.rsplit(" ", 1)[1]))
                await asyncio.sleep(0.01)

    try:
        watcher = asyncio.create_task(watch())
        async with httpx.AsyncClient(timeout=120) as client:
            results = await asyncio.gather(
                *(client.post(gw.base_url + "/chat/completions", json=body) for _ in range(8))
            )
        done = True
        await watcher
        assert [r.status_code for r in results] == [200] * 8, "all wait their turn and complete"
        assert 0.5 < peak_kv <= 0.85, f"peak KV use {peak_kv:.2f}"
        metrics = (await asyncio.to_thread(httpx.get, sim.url + "/metrics")).text
        preemptions = [line for line in metrics.splitlines() if line.startswith("vllm:num_preemptions_total")]
        assert preemptions and float(preemptions[0].rsplit(" ", 1)[1]) == 0, "the engine never ran out of KV"
    finally:
        gw.stop()
        sim.stop()
