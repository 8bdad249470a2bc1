"""Redis outage under load: stop and restart a real redis-server behind a real gateway; record the timeline.

    .venv/bin/python benchmarks/redis_outage.py            # 10 s before, 20 s down, 20 s after
    .venv/bin/python benchmarks/redis_outage.py --quick    # 4 / 8 / 8 s

A gateway (`inferline serve`, limits in Redis, fail_closed, the default breaker: 5 failures, 2 s cool-down)
in front of the simulator (`inferline sim --profile instant`, a simulator) takes closed-loop load from
`--concurrency` clients. Redis is stopped (scripts/redis.sh stop) and started again. Every request is
recorded: status, latency, Retry-After, outcome. The gateway's /metrics is polled every 0.2 s for the
breaker's state. After the load, a key with requests_per_minute: 5 sends 7 requests: exactly 5 must pass.

Invariants (exit 1 when broken): every request got an answer (no timeout, no reset), every 503 carried
Retry-After, no request waited much longer than store_timeout_s during the outage, and limits are exact
after recovery. Writes benchmarks/results/redis_outage.{json,md} (.quick.* with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from _harness import (
    REPO,
    Procs,
    console,
    free_port,
    git_state,
    header,
    loadavg,
    machine,
    main_guard,
    md_table,
    now_iso,
    rich_table,
    start_gateway,
    start_sim,
    write_results,
)

REDIS_SH = REPO / "scripts" / "redis.sh"
STORE_TIMEOUT_S = 0.25
LOAD_KEY, PROBE_KEY = "load-key-0123456789", "probe-key-0123456789"
_STATE = re.compile(r'^inferline_limit_store_circuit_state\{store="limits"\} (\S+)$', re.M)
_UP = re.compile(r'^inferline_limit_store_up\{store="limits"\} (\S+)$', re.M)
STATE_NAMES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass
class Rec:
    t0: float
    t1: float
    status: int  # 0: no answer (timeout, reset)
    retry_after: str | None
    outcome: str | None
    error: str = ""


def redis(cmd: str, port: int) -> None:
    done = subprocess.run([str(REDIS_SH), cmd, str(port)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/redis.sh {cmd} {port} failed: {done.stdout}{done.stderr}")


async def client(url: str, stop: asyncio.Event, recs: list[Rec], t_base: float) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    headers = {"authorization": f"Bearer {LOAD_KEY}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not stop.is_set():
            t0 = time.monotonic() - t_base
            try:
                async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                    await r.read()
                    recs.append(
                        Rec(
                            t0,
                            time.monotonic() - t_base,
                            r.status,
                            r.headers.get("retry-after"),
                            r.headers.get("x-inferline-outcome"),
                        )
                    )
                    if r.status == 503:
                        await asyncio.sleep(0.05)  # a real client would honour Retry-After; keep pressure on
            except (TimeoutError, aiohttp.ClientError) as exc:
                recs.append(Rec(t0, time.monotonic() - t_base, 0, None, None, type(exc).__name__))


async def watch(url: str, stop: asyncio.Event, states: list[tuple[float, int, int]], t_base: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while not stop.is_set():
            try:
                async with http.get(url + "/metrics") as r:
                    text = await r.text()
                s, u = _STATE.search(text), _UP.search(text)
                if s and u:
                    state, up = int(float(s.group(1))), int(float(u.group(1)))
                    if not states or states[-1][1:] != (state, up):
                        states.append((round(time.monotonic() - t_base, 2), state, up))
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.2)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def window(recs: list[Rec], a: float, b: float) -> dict[str, Any]:
    w = [r for r in recs if a <= r.t0 < b]
    lat = [(r.t1 - r.t0) * 1000 for r in w]
    statuses: dict[str, int] = {}
    for r in w:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    return {
        "requests": len(w),
        "statuses": statuses,
        "no_answer": sum(r.status == 0 for r in w),
        "503_with_retry_after": sum(r.status == 503 and r.retry_after is not None for r in w),
        "503_without_retry_after": sum(r.status == 503 and r.retry_after is None for r in w),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "max_ms": max(lat) if lat else None,
    }


async def probe_exact(url: str) -> list[int]:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "probe"}], "max_tokens": 2}
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for _ in range(7):
            async with http.post(
                url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {PROBE_KEY}"}
            ) as r:
                await r.read()
                out.append(r.status)
    return out


async def run(gw_url: str, redis_port: int, before_s: float, down_s: float, after_s: float, conc: int) -> Any:
    recs: list[Rec] = []
    states: list[tuple[float, int, int]] = []
    events: dict[str, float] = {}
    stop = asyncio.Event()
    t_base = time.monotonic()
    tasks = [asyncio.create_task(client(gw_url, stop, recs, t_base)) for _ in range(conc)]
    tasks.append(asyncio.create_task(watch(gw_url, stop, states, t_base)))
    await asyncio.sleep(before_s)
    events["redis_stop"] = round(time.monotonic() - t_base, 2)
    await asyncio.to_thread(redis, "stop", redis_port)
    events["redis_stopped"] = round(time.monotonic() - t_base, 2)
    await asyncio.sleep(down_s)
    events["redis_start"] = round(time.monotonic() - t_base, 2)
    await asyncio.to_thread(redis, "start", redis_port)
    events["redis_answers"] = round(time.monotonic() - t_base, 2)
    await asyncio.sleep(after_s)
    stop.set()
    await asyncio.gather(*tasks)
    events["load_end"] = round(time.monotonic() - t_base, 2)
    return recs, states, events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 s before, 8 s down, 8 s after (a smoke run).")
    ap.add_argument("--concurrency", type=int, default=8, help="Closed-loop clients (default 8).")
    args = ap.parse_args()
    before_s, down_s, after_s = (4.0, 8.0, 8.0) if args.quick else (10.0, 20.0, 20.0)
    procs = Procs(budget_s=300)
    redis_port = free_port()
    os.environ["IL_BENCH_LOAD_KEY"], os.environ["IL_BENCH_PROBE_KEY"] = LOAD_KEY, PROBE_KEY
    data: dict[str, Any] = {"machine": machine(), "date": now_iso(), "mode": "quick" if args.quick else "full"}
    data["machine"]["git"] = git_state()
    try:
        redis("start", redis_port)
        sim = start_sim(procs)
        cfg = {
            "server": {"log_level": "info"},
            "limits": {
                "store": "redis",
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "on_store_error": "fail_closed",
                "store_timeout_s": STORE_TIMEOUT_S,
                "keys": [
                    {"name": "load", "key_env": "IL_BENCH_LOAD_KEY", "limits": {"requests_per_minute": 10**7}},
                    {"name": "probe", "key_env": "IL_BENCH_PROBE_KEY", "limits": {"requests_per_minute": 5}},
                ],
            },
            "models": [{"name": "smollm2", "backends": [{"name": "sim-0", "kind": "vllm", "url": sim.url}]}],
        }
        gw = start_gateway(procs, cfg)
        recs, states, events = asyncio.run(run(gw.url, redis_port, before_s, down_s, after_s, args.concurrency))
        probe = asyncio.run(probe_exact(gw.url))
        transitions = [
            line.split("inferline.limits: ", 1)[1]
            for line in gw.log.read_text(errors="replace").splitlines()
            if "circuit" in line and "inferline.limits" in line
        ]
    finally:
        procs.stop_all()
        redis("stop", redis_port)
    down_at, up_at = events["redis_stop"], events["redis_answers"]
    phases = {
        "before": window(recs, 0, down_at),
        "outage": window(recs, down_at, events["redis_start"]),
        "recovery (Redis back)": window(recs, events["redis_start"], events["load_end"]),
    }
    first_ok_after = min((r.t1 for r in recs if r.t0 >= events["redis_start"] and r.status == 200), default=None)
    first_503 = min((r.t1 for r in recs if r.t0 >= down_at and r.status == 503), default=None)
    timeline = [(t, STATE_NAMES[s], up) for t, s, up in states]
    data.update(
        phases=phases,
        events=events,
        breaker_timeline=timeline,
        transitions_logged=transitions,
        probe_statuses=probe,
        first_503_after_stop_s=None if first_503 is None else round(first_503 - down_at, 3),
        first_200_after_redis_back_s=None if first_ok_after is None else round(first_ok_after - up_at, 3),
        loadavg_at_end=loadavg(),
    )
    checks = {
        "every request answered": all(p["no_answer"] == 0 for p in phases.values()),
        "every 503 has Retry-After": all(p["503_without_retry_after"] == 0 for p in phases.values()),
        "outage: no request waited > 2 s": (phases["outage"]["max_ms"] or 0) < 2000,
        "limits exact after recovery (5 of 7)": probe == [200] * 5 + [429] * 2,
        "served again after Redis returned": first_ok_after is not None,
    }
    data["checks"] = checks
    cols = ["phase", "requests", "statuses", "no answer", "503 w/o Retry-After", "p50 ms", "p99 ms", "max ms"]
    rows = [
        [
            name,
            p["requests"],
            " ".join(f"{k}:{v}" for k, v in sorted(p["statuses"].items())),
            p["no_answer"],
            p["503_without_retry_after"],
            p["p50_ms"],
            p["p99_ms"],
            p["max_ms"],
        ]
        for name, p in phases.items()
    ]
    md = header("Redis outage under load", data)
    md += f"Concurrency {args.concurrency}, limits in Redis (fail_closed, store_timeout_s {STORE_TIMEOUT_S}, breaker "
    md += "5 failures / 2 s cool-down), the simulator behind (instant profile).\n\n"
    md += md_table(cols, rows)
    md += "\n## Timeline (seconds from the start of the load)\n\n"
    md += md_table(
        ["t (s)", "event"], [[t, e] for e, t in events.items()] + [[t, f"breaker {s}, up {u}"] for t, s, u in timeline]
    )
    md += f"\nFirst 503 after Redis stopped: {data['first_503_after_stop_s']} s; first 200 after Redis answered "
    md += f"again: {data['first_200_after_redis_back_s']} s. Probe key (requests_per_minute 5), 7 requests after "
    md += f"recovery: {probe}.\n\nTransitions logged by the gateway:\n\n"
    md += "".join(f"- `{t}`\n" for t in transitions)
    md += "\n## Checks\n\n" + "".join(f"- {'PASS' if ok else 'FAIL'}: {name}\n" for name, ok in checks.items())
    jpath, mpath = write_results("redis_outage", data, md, quick=args.quick)
    console.print(rich_table("Redis outage under load", cols, rows))
    for t, e in sorted([(t, e) for e, t in events.items()] + [(t, f"breaker {s} up={u}") for t, s, u in timeline]):
        console.print(f"  t={t:6.2f}s  {e}")
    console.print(
        f"probe after recovery: {probe}; first 200 after Redis back: {data['first_200_after_redis_back_s']} s"
    )
    for name, ok in checks.items():
        console.print(f"  {'PASS' if ok else '[red]FAIL[/]'}: {name}")
    console.print(f"wrote {jpath.relative_to(REPO)} and {mpath.relative_to(REPO)}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    main_guard(main)
