"""End to end against the local SSE server: measured timings match injected delays, errors by kind,
open and closed loops, and the hard deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from inferline.bench import BenchConfig, BenchError, Endpoint, LengthSpec, run_bench
from inferline.bench.fakeserver import FakeServer, Reply

SMALL = {"input": LengthSpec(mean=8), "output": LengthSpec(mean=6)}
# A busy machine can make a run late (timers fire late, the loop is descheduled), never early: the timing
# tests check the lower bounds on every run and keep the best of ATTEMPTS runs for the upper bounds.
ATTEMPTS = 3


async def test_measured_ttft_and_itl_match_injected_delays(fake_server: FakeServer) -> None:
    # Delays of half a second: the same relative tolerance (+25% TTFT, +37% ITL, +17% E2E) then leaves
    # room for the tens of milliseconds a loaded machine adds to every timer, in server and client alike.
    fake_server.plan = lambda _: Reply(ttft_s=0.50, itl_s=0.20, tokens=6)
    cfg = BenchConfig(url=fake_server.url, concurrency=(4,), num_requests=8, **SMALL)
    late = []
    for _ in range(ATTEMPTS):
        result = await run_bench(cfg)
        assert result.model == "fake"  # discovered from /v1/models
        s = result.runs[0].summary
        assert s["completed"] == 8 and s["errors"] == {}
        assert s["itl_ms"]["count"] == 8 * 5
        assert s["usage_reported_ratio"] == 1.0
        assert s["output_tokens"] == 8 * 6
        assert s["input_tokens"] == 8 * 8  # usage's prompt_tokens (the server counts words)
        p50 = {k: s[k]["p50"] for k in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms")}
        assert p50["ttft_ms"] >= 500 and p50["itl_ms"] >= 190 and p50["tpot_ms"] >= 190 and p50["e2e_ms"] >= 1500
        if (
            p50["ttft_ms"] <= 625
            and p50["itl_ms"] <= 275
            and p50["tpot_ms"] <= 275
            and p50["e2e_ms"] <= 1750  # 500 + 5 x 200
        ):
            return
        late.append(p50)
    pytest.fail(f"late in every run: {late}")


async def test_errors_are_counted_by_kind(fake_server: FakeServer) -> None:
    faults = {
        1: Reply(status=429),
        2: Reply(status=500),
        3: Reply(cut_after=2, tokens=6, itl_s=0.001),  # connection dropped mid-stream
        4: Reply(error_after=1, tokens=6, itl_s=0.001),  # in-band error event
        5: Reply(cut_after=6, tokens=6, itl_s=0.001),  # all content, then cut before [DONE]
    }
    fake_server.plan = lambda i: faults.get(i, Reply())
    cfg = BenchConfig(url=fake_server.url, model="fake", concurrency=(1,), num_requests=10, **SMALL)
    s = (await run_bench(cfg)).runs[0].summary
    assert s["errors"] == {"http_429": 1, "http_500": 1, "stream_error": 1, "truncated": 2}
    assert (s["completed"], s["failed"], s["cancelled"]) == (5, 5, 0)
    assert s["ttft_ms"]["count"] == 5  # failed requests are left out of the latencies


async def test_connect_errors_and_timeouts(fake_server: FakeServer) -> None:
    srv = FakeServer()
    await srv.start()
    dead_url = srv.url
    await srv.stop()  # nothing listens there now
    cfg = BenchConfig(url=dead_url, model="m", concurrency=(2,), num_requests=4, **SMALL)
    s = (await run_bench(cfg)).runs[0].summary
    assert s["errors"] == {"connect": 4}
    with pytest.raises(BenchError, match="cannot reach"):
        await run_bench(cfg.model_copy(update={"model": None}))

    fake_server.plan = lambda _: Reply(ttft_s=60.0)
    cfg = BenchConfig(url=fake_server.url, model="m", concurrency=(2,), num_requests=2, request_timeout_s=0.2)
    t = time.perf_counter()
    s = (await run_bench(cfg)).runs[0].summary
    assert s["errors"] == {"timeout": 2}
    assert time.perf_counter() - t < 30  # the 0.2 s timeout ended them, not the server's 60 s delay


async def test_hard_deadline_cancels_and_counts_stragglers(fake_server: FakeServer) -> None:
    fake_server.plan = lambda _: Reply(ttft_s=0.01, itl_s=0.5, tokens=100)  # 50 s a request
    cfg = BenchConfig(url=fake_server.url, model="m", rates=(20.0,), duration_s=0.5, grace_s=0.3, **SMALL)
    t = time.perf_counter()
    run = (await run_bench(cfg)).runs[0]
    elapsed = time.perf_counter() - t
    assert elapsed < 25  # duration + grace ended the run, not the 50 s the requests would take
    s = run.summary
    assert s["requests"] >= 3 and s["cancelled"] == s["requests"]
    assert run.deadline_hit and not run.interrupted
    assert all(r.chunk_s for r in run.records)  # their first tokens were still recorded


async def _loop_lag_ms(stop: asyncio.Event, lags: list[float]) -> None:
    """How late the event loop wakes a 5 ms sleeper: the lag any timer in this loop suffers right now."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.005)
        lags.append((loop.time() - t - 0.005) * 1000)


async def test_open_loop_paces_requests_at_the_rate(fake_server: FakeServer) -> None:
    cfg = BenchConfig(url=fake_server.url, model="m", rates=(40.0,), num_requests=40, seed=2, **SMALL)
    late = []
    for _ in range(ATTEMPTS):
        stop, lags = asyncio.Event(), [0.0]
        ticker = asyncio.create_task(_loop_lag_ms(stop, lags))
        run = (await run_bench(cfg)).runs[0]
        stop.set()
        await ticker
        s = run.summary
        assert s["completed"] == 40
        sends = sorted(r.send_s for r in run.records)
        rate = 40 / (sends[-1] - sends[0])
        assert rate < 40 * 1.4  # never faster than the schedule (Poisson, 40 samples)
        # The generator keeps to its schedule: it adds < 50 ms to the lag the loop itself has (a busy
        # machine wakes every timer late; a generator that waited on its requests would fall far behind).
        loop_lag = sorted(lags)[int(0.99 * (len(lags) - 1))]
        if rate > 40 * 0.6 and s["send_lag_ms"]["p99"] < loop_lag + 50 and s["mean_in_flight"] < 5:
            return
        late.append((round(rate, 1), s["send_lag_ms"]["p99"], round(loop_lag, 1), s["mean_in_flight"]))
    pytest.fail(f"behind schedule in every run (rate, p99 send lag ms, p99 loop lag ms, in flight): {late}")


async def test_duration_bound_closed_loop_and_sweep(fake_server: FakeServer) -> None:
    fake_server.plan = lambda _: Reply(ttft_s=0.01, itl_s=0.01, tokens=4)
    cfg = BenchConfig(url=fake_server.url, model="m", concurrency=(1, 3), duration_s=0.4, **SMALL)
    result = await run_bench(cfg)
    assert [r.concurrency for r in result.runs] == [1, 3]
    one, three = (r.summary for r in result.runs)
    assert one["cancelled"] == three["cancelled"] == 0
    assert three["request_throughput_rps"] > 2 * one["request_throughput_rps"]
    assert result.to_json()["runs"][1]["label"] == "concurrency 3"


async def test_without_usage_output_tokens_are_content_chunks(fake_server: FakeServer) -> None:
    fake_server.plan = lambda _: Reply(tokens=5)
    cfg = BenchConfig(url=fake_server.url, model="m", concurrency=(2,), num_requests=4, include_usage=False, **SMALL)
    s = (await run_bench(cfg)).runs[0].summary
    assert s["usage_reported_ratio"] == 0.0
    assert s["output_tokens"] == 20
    assert s["input_tokens"] == 4 * 8  # the generator's own estimate


async def test_completions_endpoint(fake_server: FakeServer) -> None:
    cfg = BenchConfig(
        url=fake_server.url + "/v1", endpoint=Endpoint.COMPLETIONS, concurrency=(2,), num_requests=4, **SMALL
    )
    s = (await run_bench(cfg)).runs[0].summary
    assert s["completed"] == 4 and s["output_tokens"] == 24


async def test_stop_event_ends_the_run_early(fake_server: FakeServer) -> None:
    import asyncio

    fake_server.plan = lambda _: Reply(ttft_s=0.01, itl_s=0.2, tokens=50)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    cfg = BenchConfig(url=fake_server.url, model="m", concurrency=(2,), duration_s=30, **SMALL)
    t = time.perf_counter()
    run = (await run_bench(cfg, stop=stop)).runs[0]
    assert time.perf_counter() - t < 15  # the stop event ended it, not the 30 s duration
    assert run.interrupted and run.summary["cancelled"] == 2
