"""Chaos under load: faults on a simulated fleet behind two gateway replicas; how every request ended.

    .venv/bin/python benchmarks/chaos.py            # the full schedule (~4 min)
    .venv/bin/python benchmarks/chaos.py --quick    # a short schedule (~80 s)

Three simulated engines (`inferline sim`, each its own process: a simulator) behind two gateway replicas
that share limits in Redis. Streaming requests arrive as a Poisson process at `--load` (default 0.7) of the
capacity measured in a short closed-loop calibration, spread round-robin over the replicas like a load
balancer would (a refused connection is retried once on the other replica). The schedule:

    kill-engine     SIGKILL sim-0                         (restarted 10 s later)
    freeze-engine   SIGSTOP sim-1: no bytes, open sockets (SIGCONT 10 s later)
    restart-redis   stop Redis, start it again
    sigterm-gateway SIGTERM replica B: it drains and exits

Every request's ending is classified: ok (and whether the gateway retried it before the first token, from
its log), error_event <code> (after the first token, in-band), http_429, http_503, http_<other>,
refused (both replicas refused), dropped (the connection broke mid-stream), and the two the invariant
forbids: truncated (a stream that ends without [DONE] and without an error event) and no_ending (nothing
within the client's 60 s timeout). Per fault: the requests in flight at the fault or started in the 10 s
after it that did not simply succeed, how they ended, and the time to recover (until the last failure
attributable to it). Exit 1 if the invariant is broken. Writes benchmarks/results/chaos.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from _harness import (
    REPO,
    Proc,
    Procs,
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
    rich_table,
    start_gateway,
    write_results,
)

REDIS_SH = REPO / "scripts" / "redis.sh"
PROFILE, TIME_SCALE, MAX_SEQS = "cpu-smollm2", "0.25", 8
WINDOW_S = 10.0  # requests started this long after a fault are attributed to it
CLIENT_TIMEOUT_S = 60.0


@dataclass
class Rec:
    replica: int
    t0: float
    t_end: float = 0.0
    status: int = 0
    request_id: str = ""
    tokens: int = 0
    ending: str = ""  # see the module docstring
    retried_by_gateway: bool = False
    detail: str = ""
    replicas_tried: list[int] = field(default_factory=list)


def redis(cmd: str, port: int) -> None:
    done = subprocess.run([str(REDIS_SH), cmd, str(port)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/redis.sh {cmd} {port}: {done.stdout}{done.stderr}")


def start_engine(procs: Procs, name: str, port: int) -> Proc:
    p = procs.start(
        name,
        inferline_cmd(
            "sim",
            "--port",
            str(port),
            "--profile",
            PROFILE,
            "--time-scale",
            TIME_SCALE,
            "--max-num-seqs",
            str(MAX_SEQS),
            "--seed",
            name[-1],
        ),
    )
    p.url = f"http://127.0.0.1:{port}"
    return procs.wait_http(p, p.url + "/health", 60)


async def one(http: aiohttp.ClientSession, urls: list[str], rec: Rec, t_base: float, max_tokens: int) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": f"chaos {random.random()}"}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    order = [rec.replica, 1 - rec.replica]
    for replica in order:
        rec.replicas_tried.append(replica)
        try:
            async with http.post(urls[replica] + "/v1/chat/completions", json=body) as r:
                rec.replica, rec.status = replica, r.status
                rec.request_id = r.headers.get("x-request-id", "")
                if r.status != 200:
                    await r.read()
                    rec.ending = f"http_{r.status}"
                    break
                last = b""
                async for line in r.content:
                    if line.startswith(b"data: "):
                        last = line[6:].strip()
                        if last.startswith(b'{"error"'):
                            break
                        if last != b"[DONE]":
                            rec.tokens += 1
                if last == b"[DONE]":
                    rec.ending = "ok"
                elif last.startswith(b'{"error"'):
                    rec.ending = "error_event " + str(orjson.loads(last)["error"].get("code"))
                else:
                    rec.ending = "truncated"  # the body ended cleanly with neither [DONE] nor an error
                break
        except aiohttp.ClientConnectorError as exc:  # refused: the replica is gone; a balancer tries the other
            rec.ending, rec.detail = "refused", str(exc)[:120]
            continue
        except TimeoutError:
            rec.ending = "no_ending"
            break
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            rec.ending, rec.detail = "dropped", f"{type(exc).__name__}: {exc}"[:160]
            break
    rec.t_end = time.monotonic() - t_base


async def calibrate(urls: list[str], seconds: float, max_tokens: int) -> float:
    """Requests/s the fleet completes with every slot busy (closed loop at 3 engines x MAX_SEQS)."""
    done = 0
    stop = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def worker(i: int) -> None:
            nonlocal done
            while time.monotonic() < stop:
                rec = Rec(i % 2, 0.0)
                await one(http, urls, rec, 0.0, max_tokens)
                done += rec.ending == "ok"

        t0 = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(3 * MAX_SEQS)))
        return done / (time.monotonic() - t0)


async def load(urls: list[str], rate: float, duration_s: float, recs: list[Rec], t_base: float) -> None:
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    rng = random.Random(7)
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
        i = 0
        next_t = 0.0
        while next_t < duration_s:
            await asyncio.sleep(max(0.0, next_t - (time.monotonic() - t_base)))
            rec = Rec(i % 2, time.monotonic() - t_base)
            recs.append(rec)
            tasks.append(asyncio.create_task(one(http, urls, rec, t_base, rng.randint(24, 96))))
            i += 1
            next_t += rng.expovariate(rate)
        await asyncio.gather(*tasks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="A short schedule (about 80 s) for a smoke run or CI.")
    ap.add_argument("--load", type=float, default=0.7, help="Offered load as a fraction of capacity (0.7).")
    args = ap.parse_args()
    gap = 15.0 if args.quick else 40.0
    faults_at = {"kill-engine": gap, "freeze-engine": 2 * gap, "restart-redis": 3 * gap, "sigterm-gateway": 4 * gap}
    duration = 4 * gap + 15.0
    procs = Procs(budget_s=duration + 240)
    data: dict[str, Any] = {"machine": machine(), "date": now_iso(), "mode": "quick" if args.quick else "full"}
    data["machine"]["git"] = git_state()
    redis_port = free_port()
    engine_ports = [free_port() for _ in range(3)]
    recs: list[Rec] = []
    fault_log: list[tuple[float, str]] = []
    try:
        redis("start", redis_port)
        engines = [start_engine(procs, f"sim-{i}", port) for i, port in enumerate(engine_ports)]
        cfg = {
            "server": {"shutdown_grace_s": 5, "log_level": "info"},
            # Short deadlines so a frozen engine is noticed in seconds (defaults suit real models: 120 s).
            "routing": {
                "first_token_timeout_s": 3,
                "health_interval_s": 0.5,
                "load_interval_s": 0.2,
                "eject_cooldown_s": 5,
            },
            "admission": {"queue_timeout_s": 10},
            "limits": {
                "store": "redis",
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "anonymous_limits": {"requests_per_minute": 10**7},
            },
            "models": [
                {
                    "name": "smollm2",
                    "backends": [
                        {"name": e.name, "kind": "vllm", "url": e.url, "max_num_seqs": MAX_SEQS} for e in engines
                    ],
                }
            ],
        }
        gws = [start_gateway(procs, cfg, name=f"gateway-{c}") for c in "ab"]
        urls = [g.url for g in gws]
        capacity = asyncio.run(calibrate(urls, 6.0 if args.quick else 15.0, 60))
        rate = args.load * capacity
        console.print(f"capacity {capacity:.1f} req/s; offering {rate:.1f} req/s for {duration:.0f} s")

        async def schedule(t_base: float) -> None:
            async def at(t: float) -> None:
                await asyncio.sleep(max(0.0, t - (time.monotonic() - t_base)))

            def mark(what: str) -> None:
                fault_log.append((round(time.monotonic() - t_base, 2), what))

            await at(faults_at["kill-engine"])
            os.killpg(engines[0].pid, signal.SIGKILL)
            mark("kill-engine: SIGKILL sim-0")
            await at(faults_at["kill-engine"] + 10)
            engines[0] = await asyncio.to_thread(start_engine, procs, "sim-0", engine_ports[0])
            mark("sim-0 restarted")
            await at(faults_at["freeze-engine"])
            os.killpg(engines[1].pid, signal.SIGSTOP)
            mark("freeze-engine: SIGSTOP sim-1")
            await at(faults_at["freeze-engine"] + 10)
            os.killpg(engines[1].pid, signal.SIGCONT)
            mark("sim-1 SIGCONT")
            await at(faults_at["restart-redis"])
            mark("restart-redis: stop")
            await asyncio.to_thread(redis, "stop", redis_port)
            await asyncio.to_thread(redis, "start", redis_port)
            mark("redis answers again")
            await at(faults_at["sigterm-gateway"])
            gws[1].popen.send_signal(signal.SIGTERM)
            mark("sigterm-gateway: SIGTERM gateway-b")

        async def run_all() -> None:
            t_base = time.monotonic()
            await asyncio.gather(load(urls, rate, duration, recs, t_base), schedule(t_base))

        asyncio.run(run_all())
        retried: set[str] = set()
        for g in gws:
            for line in g.log.read_text(errors="replace").splitlines():
                if '"event":"request"' in line:
                    entry = orjson.loads(line.split(": ", 1)[1] if not line.startswith("{") else line)
                    if entry.get("attempts", 0) > 1:
                        retried.add(entry["id"])
        for r in recs:
            r.retried_by_gateway = r.request_id in retried
        data["capacity_rps"], data["offered_rps"] = round(capacity, 2), round(rate, 2)
    finally:
        procs.stop_all()
        redis("stop", redis_port)

    totals = Counter(r.ending for r in recs)
    rows = []
    per_fault: dict[str, Any] = {}
    for name, t in faults_at.items():
        window = [r for r in recs if r.t0 < t + WINDOW_S and r.t_end >= t]
        affected = [r for r in window if r.ending != "ok" or r.retried_by_gateway or len(r.replicas_tried) > 1]
        endings = Counter(
            ("ok after gateway retry" if r.retried_by_gateway else "ok after replica retry")
            if r.ending == "ok"
            else r.ending
            for r in affected
        )
        failed = [r for r in affected if r.ending != "ok"]
        recover = max((r.t_end for r in failed), default=t) - t
        per_fault[name] = {
            "at_s": t,
            "in_window": len(window),
            "affected": len(affected),
            "endings": dict(endings),
            "recovery_s": round(recover, 2),
        }
        rows.append(
            [
                name,
                round(t, 1),
                len(window),
                len(affected),
                ", ".join(f"{k} {v}" for k, v in endings.most_common()) or "-",
                round(recover, 2),
            ]
        )
    violations = totals["truncated"] + totals["no_ending"]
    data.update(
        requests=len(recs),
        endings=dict(totals),
        faults=per_fault,
        fault_log=fault_log,
        invariant_violations=violations,
        loadavg_at_end=loadavg(),
    )
    cols = ["fault", "at s", "requests in window", "affected", "how they ended", "recovery s"]
    md = header("Chaos under load", data)
    md += (
        f"3 simulated engines (`inferline sim --profile {PROFILE} --time-scale {TIME_SCALE} --max-num-seqs "
        f"{MAX_SEQS}`, a simulator), 2 gateway replicas sharing Redis limits, streaming requests at "
        f"{args.load:.0%} of the measured capacity ({data['capacity_rps']} req/s): {data['offered_rps']} req/s, "
        f"{len(recs)} requests. Window per fault: {WINDOW_S:.0f} s.\n\n"
    )
    md += md_table(cols, rows)
    md += "\nAll requests by ending: " + ", ".join(f"{k} {v}" for k, v in totals.most_common()) + "\n\n"
    md += f"Invariant (no request without an ending, no clean-looking truncated stream): {violations} violations.\n\n"
    md += "Schedule as run:\n\n" + "".join(f"- t={t} s: {what}\n" for t, what in fault_log)
    jpath, mpath = write_results("chaos", data, md, quick=args.quick)
    console.print(rich_table("Chaos under load", cols, rows))
    console.print("all requests: " + ", ".join(f"{k} {v}" for k, v in totals.most_common()))
    console.print(f"invariant violations (truncated + no_ending): {violations}")
    console.print(f"wrote {jpath.relative_to(REPO)} and {mpath.relative_to(REPO)}")
    return 0 if violations == 0 else 1


if __name__ == "__main__":
    main_guard(main)
