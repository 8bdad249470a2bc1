"""How much load the generator itself can drive: the yardstick run behind `inferline bench selftest`.

The fake server runs in its own process (its own core), the generator in this one, closed loop. Per
chunk count two modes: bundled (the whole response in one write: per-request cost dominates) and
paced (one chunk per stream per 1 ms tick: every chunk is its own network read, as with an engine).
CPU seconds of both processes are read from /proc, so the report says which side was the limit.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from inferline.bench.config import BenchConfig, LengthSpec
from inferline.bench.runner import run_bench

PACED_TICK_S = 0.001


async def measure_capacity(
    *,
    concurrency: int = 64,
    paced_concurrency: int = 256,
    duration_s: float = 5.0,
    tokens: list[int] | None = None,
    open_rate: float | None = 1000.0,
) -> list[dict[str, Any]]:
    """Closed-loop rows per chunk count and mode, then (optionally) one open-loop row at `open_rate`."""
    rows: list[dict[str, Any]] = []
    for n in tokens or [16, 256]:
        rows.append(await _measure("bundled", None, n, duration_s, concurrency=concurrency))
        rows.append(await _measure("paced", PACED_TICK_S, n, duration_s, concurrency=paced_concurrency))
    if open_rate:
        n = (tokens or [16])[0]
        rows.append(await _measure("paced", PACED_TICK_S, n, duration_s, rate=open_rate))
    return rows


async def _measure(
    mode: str,
    tick: float | None,
    tokens: int,
    duration_s: float,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "inferline.bench.fakeserver", "--port", "0"]
    if tick is not None:
        argv += ["--tick", str(tick)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = line.strip().rsplit(" ", 1)[-1]
        cfg = BenchConfig(
            url=url,
            model="fake",
            concurrency=(concurrency,) if concurrency else (),
            rates=(rate,) if rate else (),
            duration_s=duration_s,
            grace_s=5,
            input=LengthSpec(mean=32),
            output=LengthSpec(mean=tokens),
        )
        server_cpu0 = _cpu_s(proc.pid)
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = await run_bench(cfg)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        server_cpu = _cpu_s(proc.pid) - server_cpu0
    finally:
        proc.terminate()
        await proc.wait()
    s = result.runs[0].summary
    dur = s["duration_s"] or wall
    chunks = sum(len(r.chunk_s) for r in result.runs[0].records if r.ok)
    done = s["completed"]
    return {
        "mode": mode,
        "loop": f"open {rate:g} req/s" if rate else f"closed {concurrency} users",
        "tokens_per_response": tokens,
        "completed": done,
        "errors": s["errors"],
        "requests_per_s": round(done / dur, 1),
        "chunks_per_s": round(chunks / dur, 1),
        "generator_cpu_ratio": round(cpu / wall, 3),
        "server_cpu_ratio": round(server_cpu / wall, 3) if server_cpu >= 0 else None,
        "generator_cpu_us_per_request": round(cpu / done * 1e6, 1) if done else None,
        "generator_cpu_us_per_chunk": round(cpu / chunks * 1e6, 2) if chunks else None,
        "send_lag_p99_ms": s["send_lag_ms"]["p99"] if rate else None,
        "ttft_p50_ms": s["ttft_ms"]["p50"],
        "itl_p50_ms": s["itl_ms"]["p50"],
        "itl_p99_ms": s["itl_ms"]["p99"],
        "cpu_count": os.cpu_count(),
    }


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc); -inf elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return -float("inf")


def print_capacity(rows: list[dict[str, Any]], console: Console) -> None:
    t = Table(title="load generator capacity against a trivially fast server", header_style="bold")
    cols = (
        ("mode", "mode"),
        ("load", "loop"),
        ("chunks/resp", "tokens_per_response"),
        ("req/s", "requests_per_s"),
        ("chunks/s", "chunks_per_s"),
        ("gen CPU", "generator_cpu_ratio"),
        ("server CPU", "server_cpu_ratio"),
        ("gen us/req", "generator_cpu_us_per_request"),
        ("gen us/chunk", "generator_cpu_us_per_chunk"),
        ("ITL p99 ms", "itl_p99_ms"),
        ("send lag p99 ms", "send_lag_p99_ms"),
    )
    for name, _ in cols:
        t.add_column(name, justify="right")
    for r in rows:
        t.add_row(*(f"{r[k]:,}" if isinstance(r[k], int | float) else str(r[k] or "-") for _, k in cols))
    t.caption = "CPU = CPU seconds / wall seconds of each process (1.0 = one core busy)"
    console.print(t)
