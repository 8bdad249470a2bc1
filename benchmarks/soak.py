"""Soak: mixed traffic through one gateway for a long time; does anything grow that should not?

    .venv/bin/python benchmarks/soak.py                    # 30 minutes
    .venv/bin/python benchmarks/soak.py --duration 120     # 2 minutes (tests/test_soak.py runs this)

A gateway (limits in Redis, response cache on) in front of two simulated engines (`inferline sim`, a
simulator) takes `--concurrency` closed-loop clients sending a mix: streams, non-stream answers, streams
the client cancels after two chunks, invalid requests (400), unknown models (404), a key hammered past its
requests_per_minute (429), and identical deterministic requests (cache hits, single-flight). Every 10 s it
samples the gateway process: RSS, open file descriptors, asyncio tasks (the gateway's
inferline_debug_asyncio_tasks gauge) and established connections to the engines and to Redis.

Growth is measured after a warm-up (the first 20% of the run, at least 20 s): the mean of the last third of
the samples against the mean of the first third after warm-up; the target is < 5% for RSS, asyncio tasks,
engine connections and the fds other than pooled connections (a full run checks all four; the 2-minute
variant is too short for a mean over thirds of tasks and fds to mean anything and checks RSS only). Pooled
connections may grow towards their pools' bounds (a pool opens a connection when its concurrency reaches
a new peak, and keeps it) — that is checked as "never above the bound", not as growth. After the load stops,
the idle values are compared with the idle values before it (tasks, fds and engine connections must come
back: a leak shows as a surplus). Writes benchmarks/results/soak.{json,md} and soak.svg (the plot).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import time
from collections import Counter
from typing import Any

import aiohttp
import psutil
from _harness import (
    REPO,
    RESULTS,
    Stack,
    console,
    free_port,
    git_state,
    header,
    inferline_cmd,
    loadavg,
    machine,
    main_guard,
    md_table,
    now_iso,
    write_results,
)

from inferline.backends.openai_http import ENGINE_KEEPALIVE_S
from inferline.cache.redis import MAX_CONNECTIONS as CACHE_REDIS_MAX_CONNECTIONS
from inferline.limits.redis import MAX_CONNECTIONS as LIMITS_REDIS_MAX_CONNECTIONS

REDIS_SH = REPO / "scripts" / "redis.sh"
SAMPLE_EVERY_S = 10.0
TASKS = re.compile(r"^inferline_debug_asyncio_tasks (\S+)$", re.M)
LIMITED_KEY, OPEN_KEY = "soak-limited-key-0001", "soak-open-key-000001"
MAX_GROWTH = 0.05
# The gateway's two Redis pools (limits and cache), each bounded.
REDIS_POOL_BOUND = LIMITS_REDIS_MAX_CONNECTIONS + CACHE_REDIS_MAX_CONNECTIONS


def redis(cmd: str, port: int) -> None:
    done = subprocess.run([str(REDIS_SH), cmd, str(port)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/redis.sh {cmd} {port}: {done.stdout}{done.stderr}")


async def sample(
    http: aiohttp.ClientSession, gw_url: str, pid: int, engine_ports: set[int], redis_port: int
) -> dict[str, float]:
    proc = psutil.Process(pid)
    async with http.get(gw_url + "/metrics") as r:
        text = await r.text()
    m = TASKS.search(text)
    established = [c for c in proc.net_connections(kind="tcp") if c.raddr and c.status == psutil.CONN_ESTABLISHED]
    fds = proc.num_fds()
    engine_conns = sum(c.raddr.port in engine_ports for c in established)
    redis_conns = sum(c.raddr.port == redis_port for c in established)
    return {
        "rss_mb": round(proc.memory_info().rss / 2**20, 2),
        "fds": float(fds),
        # Everything but the pooled connections: a leaked socket, file or pipe shows here.
        "fds_other": float(fds - engine_conns - redis_conns),
        "tasks": float(m.group(1)) if m else float("nan"),
        "engine_conns": float(engine_conns),
        "redis_conns": float(redis_conns),
    }


async def one(http: aiohttp.ClientSession, url: str, rng: random.Random, counts: Counter[str]) -> None:
    r = rng.random()
    msg = [{"role": "user", "content": f"soak {rng.randint(0, 10**9)}"}]
    auth = {"authorization": f"Bearer {OPEN_KEY}"}
    body: dict[str, Any] = {"model": "smollm2", "messages": msg, "max_tokens": rng.randint(8, 64)}
    kind = "stream"
    if r < 0.35:
        body["stream"] = True
    elif r < 0.55:
        kind = "whole"
    elif r < 0.65:
        kind, body["stream"] = "cancel", True
    elif r < 0.72:
        kind, body = "invalid", {"model": "smollm2", "messages": "not a list"}
    elif r < 0.75:
        kind, body["model"] = "unknown_model", "no-such-model"
    elif r < 0.87:
        kind, auth = "limited", {"authorization": f"Bearer {LIMITED_KEY}"}
    else:
        kind = "duplicate"
        body.update(messages=[{"role": "user", "content": "the same question"}], max_tokens=16, temperature=0)
    try:
        async with http.post(url + "/v1/chat/completions", json=body, headers=auth) as resp:
            if kind == "cancel" and resp.status == 200:
                seen = 0
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        seen += 1
                        if seen >= 2:
                            break  # leaving the block closes the connection mid-stream: a client cancel
            else:
                await resp.read()
            counts[f"{kind} {resp.status}"] += 1
    except (TimeoutError, aiohttp.ClientError) as exc:
        counts[f"{kind} {type(exc).__name__}"] += 1


async def drive(url: str, duration_s: float, conc: int, counts: Counter[str]) -> None:
    stop = time.monotonic() + duration_s
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                await one(http, url, rng, counts)

        await asyncio.gather(*(worker(i) for i in range(conc)))


async def soak(gw_url: str, pid: int, ports: set[int], redis_port: int, duration_s: float, conc: int) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    samples: list[dict[str, float]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        idle_before = await sample(http, gw_url, pid, ports, redis_port)
        t0 = time.monotonic()
        load = asyncio.create_task(drive(gw_url, duration_s, conc, counts))
        while not load.done():
            await asyncio.wait({load}, timeout=SAMPLE_EVERY_S)
            s = await sample(http, gw_url, pid, ports, redis_port)
            s["t_s"] = round(time.monotonic() - t0, 1)
            s["requests"] = float(sum(counts.values()))
            samples.append(s)
        await load
        # Let in-flight bookkeeping (reconciles) settle and idle engine connections expire (keep-alive 4 s,
        # closed by the engine client's next sweep).
        await asyncio.sleep(ENGINE_KEEPALIVE_S + 2)
        idle_after = await sample(http, gw_url, pid, ports, redis_port)
    return {"counts": dict(counts), "samples": samples, "idle_before": idle_before, "idle_after": idle_after}


def growth(samples: list[dict[str, float]], key: str, warmup_s: float) -> float | None:
    after = [s[key] for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 3:
        return None
    third = max(1, len(after) // 3)
    first, last = sum(after[:third]) / third, sum(after[-third:]) / third
    return None if first == 0 else round((last - first) / first, 4)


def plot(samples: list[dict[str, float]], warmup_s: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    series = [
        ("rss_mb", "RSS (MiB)"),
        ("fds", "open fds"),
        ("fds_other", "fds not pooled"),
        ("tasks", "asyncio tasks"),
        ("engine_conns", "engine conns"),
        ("redis_conns", "Redis conns"),
    ]
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 11), sharex=True)
    for ax, (key, label) in zip(axes, series, strict=True):
        ax.plot(t, [s[key] for s in samples], marker=".")
        ax.axvline(warmup_s / 60, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes (dashed: end of warm-up)")
    fig.suptitle("inferline gateway under mixed traffic (soak)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=1800.0, help="Seconds of traffic (default 1800: 30 min).")
    ap.add_argument("--concurrency", type=int, default=8, help="Closed-loop clients (default 8).")
    args = ap.parse_args()
    quick = args.duration < 1800
    warmup_s = max(20.0, 0.2 * args.duration)
    procs = Stack(budget_s=args.duration + 300)
    redis_port = free_port()
    os.environ["IL_SOAK_LIMITED_KEY"], os.environ["IL_SOAK_OPEN_KEY"] = LIMITED_KEY, OPEN_KEY
    data: dict[str, Any] = {"machine": machine(), "date": now_iso(), "mode": "quick" if quick else "full"}
    data["machine"]["git"] = git_state()
    try:
        redis("start", redis_port)
        engines = []
        for i in range(2):
            port = free_port()
            p = procs.start(
                f"sim-{i}",
                inferline_cmd(
                    "sim",
                    "--port",
                    str(port),
                    "--profile",
                    "cpu-smollm2",
                    "--time-scale",
                    "0.1",
                    "--max-num-seqs",
                    "16",
                ),
            )
            p.url = f"http://127.0.0.1:{port}"
            engines.append(procs.wait_http(p, p.url + "/health", 60))
        cfg = {
            "limits": {
                "store": "redis",
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "keys": [
                    {"name": "open", "key_env": "IL_SOAK_OPEN_KEY", "limits": {"requests_per_minute": 10**7}},
                    {"name": "limited", "key_env": "IL_SOAK_LIMITED_KEY", "limits": {"requests_per_minute": 30}},
                ],
            },
            "cache": {"enabled": True},
            "models": [
                {
                    "name": "smollm2",
                    "backends": [{"name": e.name, "kind": "vllm", "url": e.url, "max_num_seqs": 16} for e in engines],
                }
            ],
        }
        gw = procs.gateway("inferline", cfg)
        ports = {int(e.url.rsplit(":", 1)[1]) for e in engines}
        result = asyncio.run(soak(gw.url, gw.pid, ports, redis_port, args.duration, args.concurrency))
    finally:
        procs.stop_all()
        redis("stop", redis_port)
    samples = result["samples"]
    keys = ("rss_mb", "fds", "fds_other", "tasks", "engine_conns", "redis_conns")
    growths = {k: growth(samples, k, warmup_s) for k in keys}
    before, after = result["idle_before"], result["idle_after"]
    checks = {"RSS growth after warm-up < 5%": (growths["rss_mb"] or 0) < MAX_GROWTH}
    if not quick:
        for key, name in (
            ("tasks", "asyncio tasks"),
            ("fds_other", "fds other than pooled connections"),
            ("engine_conns", "engine connections"),
        ):
            checks[f"{name}: growth after warm-up < 5%"] = (growths[key] or 0) < MAX_GROWTH
        checks[f"Redis connections never above the pools' bound ({REDIS_POOL_BOUND})"] = (
            max(s["redis_conns"] for s in samples) <= REDIS_POOL_BOUND
        )
    checks |= {
        "idle asyncio tasks back to the level before the load (+2)": after["tasks"] <= before["tasks"] + 2,
        # Pooled keep-alive connections (to engines and Redis) may stay open; every other fd must be gone.
        "idle open fds back to the level before the load (+ pooled connections)": after["fds_other"]
        <= before["fds_other"] + 2,
        # Only the health/load polls' connections stay; a request's connection expires when idle.
        "idle engine connections back to the level before the load (+1)": after["engine_conns"]
        <= before["engine_conns"] + 1,
        f"idle Redis connections within the pools' bound ({REDIS_POOL_BOUND})": after["redis_conns"]
        <= REDIS_POOL_BOUND,
    }
    data.update(
        duration_s=args.duration,
        warmup_s=warmup_s,
        concurrency=args.concurrency,
        counts=result["counts"],
        samples=samples,
        growth=growths,
        idle_before=before,
        idle_after=after,
        checks=checks,
        loadavg_at_end=loadavg(),
    )
    svg = RESULTS / ("soak.quick.svg" if quick else "soak.svg")
    plot(samples, warmup_s, str(svg))
    rows = [[k, before[k], after[k], growths[k]] for k in keys]
    cols = ["measure", "idle before", "idle after", "growth after warm-up"]
    md = header("Soak: mixed traffic", data)
    md += (
        f"{args.duration:.0f} s of mixed traffic from {args.concurrency} closed-loop clients through one gateway "
        f"(Redis limits, cache on) over 2 simulated engines; sampled every {SAMPLE_EVERY_S:.0f} s; warm-up "
        f"{warmup_s:.0f} s. Growth: last third of the post-warm-up samples against the first third.\n\n"
    )
    md += md_table(cols, rows)
    md += f"\n![soak]({svg.name})\n\nRequests by kind and status: "
    md += ", ".join(f"{k} {v}" for k, v in sorted(result["counts"].items())) + "\n\n## Checks\n\n"
    md += "".join(f"- {'PASS' if ok else 'FAIL'}: {name}\n" for name, ok in checks.items())
    jpath, mpath = write_results("soak", data, md, quick=quick)
    for r in rows:
        console.print(f"  {r[0]:<14} idle before {r[1]:>8}  idle after {r[2]:>8}  growth {r[3]}")
    console.print("requests: " + ", ".join(f"{k} {v}" for k, v in sorted(result["counts"].items())))
    for name, ok in checks.items():
        console.print(f"  {'PASS' if ok else '[red]FAIL[/]'}: {name}")
    console.print(f"wrote {jpath.relative_to(REPO)}, {mpath.relative_to(REPO)}, {svg.relative_to(REPO)}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    main_guard(main)
