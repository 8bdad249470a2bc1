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


def close_to(measured: float, model: float) -> bool:
    """Never faster than the model (timers only fire late); late by at most 30% (jitter, HTTP, a busy CPU)."""
    return 0.95 * model - 0.002 <= measured <= 1.3 * model + 0.004


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
    async with SimFleet("cpu-smollm2", time_scale=TIME_SCALE) as fleet, aiohttp.ClientSession() as http:
        ttft, e2e, prompt, chunks = await stream(http, fleet.urls[0], 60)
    (model,) = expected(1, prompt, 60)
    assert chunks == 60
    # ~110 tok/s unscaled: 59 decode steps of base + 1 sequence after the prefill step
    assert close_to(ttft, model.first_token_s * TIME_SCALE), (ttft, model.first_token_s * TIME_SCALE)
    assert close_to(e2e, model.finish_s * TIME_SCALE), (e2e, model.finish_s * TIME_SCALE)


async def test_cpu_smollm2_eight_streams_total_throughput() -> None:
    async with SimFleet("cpu-smollm2", time_scale=TIME_SCALE) as fleet, aiohttp.ClientSession() as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(stream(http, fleet.urls[0], 40) for _ in range(8)))
        wall = time.perf_counter() - start
    prompt = results[0][2]
    model = expected(8, prompt, 40)
    makespan = max(r.finish_s for r in model) * TIME_SCALE
    assert all(r[3] == 40 for r in results)
    # ~190 tok/s unscaled at 8 streams: the batch's steps cost base + 8 sequences each
    assert close_to(wall, makespan), (wall, makespan)
    # the model itself: one prefill step for all 8 prompts, then 39 decode steps at 8 sequences (~190 tok/s)
    by_formula = CPU_SMOLLM2.step_s(0, 0, 8 * prompt) + 39 * CPU_SMOLLM2.step_s(8, 0, 0)
    assert makespan == pytest.approx(by_formula * TIME_SCALE)
