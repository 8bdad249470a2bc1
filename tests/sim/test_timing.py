"""Real-time pacing matches the model: measured TTFT and E2E against the scheduler run in virtual time."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from inferline.sim import SimFleet
from inferline.sim.profiles import CPU_SMOLLM2
from inferline.sim.scheduler import Scheduler, SimRequest, run_virtual

TIME_SCALE = 0.5
ATTEMPTS = 3  # a run can only be late (a busy machine deschedules us), never early: keep the best of 3


def never_early(measured: float, model: float) -> None:
    assert measured >= 0.95 * model - 0.002, f"faster than the model: {measured:.4f}s < {model:.4f}s"


def not_late(measured: float, model: float) -> bool:
    # A wall-clock upper bound holds only on a quiet machine: 5x (the suite's rule) catches a broken pacer,
    # not a busy neighbour (under a stress run TTFT was 1.5x the model in every try). How close the pacing
    # is, is measured by benchmarks/calibrate_sim.py; never_early is the exact half of this test.
    return measured <= 5 * model + 0.004


async def stream(http: aiohttp.ClientSession, url: str, max_tokens: int) -> tuple[float, float, int, int]:
    """(ttft_s, e2e_s, prompt_tokens, content chunks) as a client sees them."""
    body = {
        "messages": [{"role": "user", "content": "Tell me a story about a fox."}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    ttft = last = 0.0
    chunks = prompt = 0
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            event = orjson.loads(line[6:])
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                last = time.perf_counter() - start
                ttft = ttft or last
                chunks += 1
            elif event.get("usage"):
                prompt = event["usage"]["prompt_tokens"]
    return ttft, last, prompt, chunks


def expected(n_streams: int, prompt: int, max_tokens: int) -> list[SimRequest]:
    reqs = [SimRequest(str(i), prompt, max_tokens, max_tokens) for i in range(n_streams)]
    run_virtual(Scheduler(CPU_SMOLLM2), [(0.0, r) for r in reqs])
    return reqs


async def test_cpu_smollm2_single_stream_pace() -> None:
    runs = []
    async with SimFleet("cpu-smollm2", time_scale=TIME_SCALE) as fleet, aiohttp.ClientSession() as http:
        for _ in range(ATTEMPTS):
            ttft, e2e, prompt, chunks = await stream(http, fleet.urls[0], 60)
            assert chunks == 60
            (model,) = expected(1, prompt, 60)
            # ~110 tok/s unscaled: 59 decode steps of base + 1 sequence after the prefill step
            want_ttft, want_e2e = model.first_token_s * TIME_SCALE, model.finish_s * TIME_SCALE
            never_early(ttft, want_ttft)
            never_early(e2e, want_e2e)
            runs.append((ttft, e2e))
            if not_late(ttft, want_ttft) and not_late(e2e, want_e2e):
                return
    pytest.fail(f"late in every run: (ttft, e2e) {runs}; model ({want_ttft:.4f}, {want_e2e:.4f})")


async def test_cpu_smollm2_eight_streams_total_throughput() -> None:
    walls = []
    async with SimFleet("cpu-smollm2", time_scale=TIME_SCALE) as fleet, aiohttp.ClientSession() as http:
        for _ in range(ATTEMPTS):
            start = time.perf_counter()
            results = await asyncio.gather(*(stream(http, fleet.urls[0], 40) for _ in range(8)))
            wall = time.perf_counter() - start
            assert all(r[3] == 40 for r in results)
            prompt = results[0][2]
            makespan = max(r.finish_s for r in expected(8, prompt, 40)) * TIME_SCALE
            # the model itself: one prefill step for all 8 prompts, then 39 decode steps at 8 sequences
            by_formula = CPU_SMOLLM2.step_s(0, 0, 8 * prompt) + 39 * CPU_SMOLLM2.step_s(8, 0, 0)
            assert makespan == pytest.approx(by_formula * TIME_SCALE)
            never_early(wall, makespan)
            walls.append(wall)
            if not_late(wall, makespan):  # ~190 tok/s unscaled once the batch is decoding
                return
    pytest.fail(f"late in every run: {walls}; model {makespan:.4f}s")
