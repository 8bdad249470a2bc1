"""The gateway's own fragmentation gauge, end to end: `inferline serve` in front of a simulated engine whose
/metrics also exports the true value. Short streamed requests leave most of each sequence's last KV block
empty — the workload that fragments — and the gateway's figure must follow the truth."""

from __future__ import annotations

import asyncio
import math
import statistics
from pathlib import Path

import httpx

from support import start_gateway, start_sim


def _gauge(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _stream(client: httpx.AsyncClient, url: str, i: int) -> None:
    body = {"model": "smollm2", "prompt": "abcd" * (1 + i % 12), "max_tokens": 1 + i % 8, "stream": True}
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        assert r.status_code == 200
        async for _ in r.aiter_lines():
            pass


async def test_gateway_fragmentation_gauge_follows_the_simulators_truth(tmp_path: Path) -> None:
    # Slowed down 20x so each short request holds its blocks for a while; 96 blocks of 16 tokens.
    sim = start_sim(tmp_path, "--profile", "h100-llama8b", "--kv-blocks", "96", "--max-num-seqs", "128",
                    "--time-scale", "20")  # fmt: skip
    config = {
        "routing": {"load_interval_s": 0.05},
        "models": [{"name": "smollm2", "backends": [{"name": "sim-0", "kind": "vllm", "url": sim.url,
                                                      "max_num_seqs": 128}]}],
    }  # fmt: skip
    gw = start_gateway(tmp_path, config)
    pairs: list[tuple[float, float]] = []
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            stop = asyncio.Event()

            async def load(worker: int) -> None:
                i = worker
                while not stop.is_set():
                    await _stream(client, gw.url, i)
                    i += 24

            workers = [asyncio.create_task(load(w)) for w in range(24)]
            for _ in range(200):
                await asyncio.sleep(0.1)
                truth = _gauge(
                    (await client.get(sim.url + "/metrics")).text, "inferline_sim_kv_cache_fragmentation_ratio"
                )
                ours = _gauge(
                    (await client.get(gw.url + "/metrics")).text, "inferline_backend_kv_cache_fragmentation_ratio"
                )
                if truth is not None and ours is not None and not math.isnan(ours) and truth > 0:
                    pairs.append((ours, truth))
                if len(pairs) >= 40:
                    break
            stop.set()
            await asyncio.gather(*workers)
    finally:
        gw.stop()
        sim.stop()
    assert len(pairs) >= 20, f"the gauge was unknown (NaN) or the engine idle too often: {pairs}"
    errors = [abs(o - t) for o, t in pairs]
    # The two are read at different instants (the gateway's reading lags up to one poll), so single
    # samples differ; on average the gateway's figure must be within 5 points of capacity of the truth.
    assert statistics.fmean(errors) <= 0.05, pairs
    assert statistics.fmean(t for _, t in pairs) > 0.05, "the workload did not fragment: the test proves nothing"
    print(
        f"fragmentation gateway vs truth: {len(pairs)} samples, mean truth {statistics.fmean(t for _, t in pairs):.3f}, "
        f"mean |error| {statistics.fmean(errors):.3f}"
    )
