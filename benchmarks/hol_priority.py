"""Head-of-line blocking: the gateway's admission queue in FCFS order vs its token-budget priority order.

One simulated engine (h100-llama8b profile, `--max-num-seqs 8`) behind the gateway; the gateway knows
the engine's 8 slots, so whatever does not fit waits in the gateway's queue. A short/long mix (80% short:
64 words in / 32 out; 20% long: 2000 words in / 1000 out), the same seed, so the same arrivals and prompts,
in every variant. The engine's capacity for this mix (computed by running the sim's scheduler in virtual
time on a backlog) is about 2.7 req/s; two offered loads:

  high  2.6 req/s (~95% of capacity): queues come and go with the Poisson bursts
  over  3.6 req/s (~130%): the backlog grows for the whole arrival window, then drains

Variants:
  fcfs               admission.policy fcfs: short requests wait behind long ones
  priority           admission.policy priority: smallest token budget first, with aging
  engine-queue fcfs  (over, full run) priority, but the backend keeps max_num_seqs 256 (the default): the gateway
                     forwards everything and the excess waits in the engine's own FCFS queue
  engine-queue prio  (over, full run) as above, the engine under --scheduling-policy priority and the backend
                     `scheduling_priority: true`: the gateway's priority value is passed to the engine

The engine runs at --time-scale 0.5 (every modelled duration halved, so twice the model time fits in the
run); the gateway's own time constants (aging_tokens_per_s, queue_timeout_s) are scaled by the same
factor, so it behaves as it would against a full-speed engine. Latencies are wall-clock as the client
saw them: multiply by 2 for the model's (H100) time. Rates are given in model time.

    .venv/bin/python benchmarks/hol_priority.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Stack,
    console,
    gateway_config,
    git_commit,
    header,
    hist,
    load,
    machine,
    main_guard,
    md_table,
    now_iso,
    rich_table,
    scrape,
    write_results,
)

PROFILE = "h100-llama8b"
ENGINE_SEQS = 8
TIME_SCALE = 0.5
AGING_TOKENS_PER_S = 200.0  # the gateway's default, in model time
QUEUE_TIMEOUT_S = 30.0  # the gateway's default, in model time
GW_ROUTING = {"load_interval_s": 0.1}  # the gateway reads the engine's load often: queueing follows it closely
LOADS = {"high": 2.6, "over": 3.6}  # req/s in model time; capacity for this mix is ~2.7 (capacity_rps())
WORKLOAD: dict[str, Any] = {
    "workload": "mix",
    "short_frac": 0.8,
    "input": {"mean": 64},
    "output": {"mean": 32},
    "long_input_len": 2000,
    "long_output_len": 1000,
    "seed": 1,
}

_FCFS = {"name": "fcfs", "policy": "fcfs", "backend_seqs": ENGINE_SEQS, "engine_priority": False}
_PRIO = {"name": "priority", "policy": "priority", "backend_seqs": ENGINE_SEQS, "engine_priority": False}
_EQ_FCFS = {"name": "engine-queue fcfs", "policy": "priority", "backend_seqs": 256, "engine_priority": False}
_EQ_PRIO = {"name": "engine-queue prio", "policy": "priority", "backend_seqs": 256, "engine_priority": True}
# (load, variant, in the quick run too)
PLAN: list[tuple[str, dict[str, Any], bool]] = [
    ("high", _FCFS, False),
    ("high", _PRIO, False),
    ("over", _FCFS, True),
    ("over", _PRIO, True),
    ("over", _EQ_FCFS, False),
    ("over", _EQ_PRIO, False),
]


def capacity_rps(n: int = 2000) -> float:
    """Requests/s one engine serves of this mix when it never idles (a backlog, FCFS), in model time."""
    import numpy as np

    from inferline.bench import BenchConfig
    from inferline.bench.workload import request_body, requests
    from inferline.sim.profiles import get_profile
    from inferline.sim.scheduler import Scheduler, SimRequest, run_virtual
    from inferline.sim.wire import parse_completion

    cfg = BenchConfig(url="http://unused", model="smollm2", rates=(1.0,), **WORKLOAD)
    reqs = []
    for i, spec in zip(range(n), requests(cfg), strict=False):
        body = request_body(spec, cfg, "smollm2")
        call = parse_completion(body, chat=True, served_model="smollm2", max_model_len=1 << 20, priority_enabled=False)
        reqs.append((0.0, SimRequest(str(i), call.prompt_tokens, call.max_tokens, call.max_tokens)))
    profile = get_profile(PROFILE).with_overrides(max_num_seqs=ENGINE_SEQS)
    return float(np.float64(n) / run_virtual(Scheduler(profile), reqs))


def run_variant(stack: Stack, load_name: str, v: dict[str, Any], window_s: float) -> dict[str, Any]:
    sim_args = ["--max-num-seqs", str(ENGINE_SEQS), "--time-scale", str(TIME_SCALE), "--seed", "0"]
    if v["engine_priority"]:
        sim_args += ["--scheduling-policy", "priority"]
    sim_proc, urls = stack.sim("sim", 1, PROFILE, *sim_args)
    backend: dict[str, Any] = {"name": "e0", "kind": "vllm", "url": urls[0], "max_num_seqs": v["backend_seqs"]}
    if v["engine_priority"]:
        backend["scheduling_priority"] = True
    cfg = gateway_config(
        [backend],
        admission={
            "policy": v["policy"],
            "aging_tokens_per_s": AGING_TOKENS_PER_S / TIME_SCALE,
            "queue_timeout_s": QUEUE_TIMEOUT_S * TIME_SCALE,
        },
        routing={**GW_ROUTING, "balancer": "least_loaded", "prefix_affinity": False},
        log_level="warning",
    )
    gw = stack.gateway("gateway", cfg)
    g0, e0 = scrape(gw.url), scrape(urls[0])
    t0 = time.monotonic()
    cpu0 = {p.name: p.cpu_s() for p in stack.procs}
    run = load(
        gw.url,
        stack,
        rates=(LOADS[load_name] / TIME_SCALE,),
        duration_s=window_s,
        grace_s=60.0,
        **WORKLOAD,
    )
    wall = time.monotonic() - t0
    cpu = {p.name: round((p.cpu_s() - cpu0[p.name]) / wall, 2) for p in stack.procs}
    g1, e1 = scrape(gw.url), scrape(urls[0])
    stack.stop(gw)
    stack.stop(sim_proc)
    s = run.summary
    by = s.get("by_class", {})
    return {
        "load": load_name,
        "rate_rps_model": LOADS[load_name],
        "variant": v,
        "summary": s,
        "gateway_queue_s": hist(g0, g1, "inferline_queue_time_seconds"),
        "engine_queue_s": hist(e0, e1, "vllm:request_queue_time_seconds"),
        "cpu_cores": cpu,
        "short": by.get("short", {}),
        "long": by.get("long", {}),
    }


def ms(d: dict[str, Any], metric: str, q: str) -> float | None:
    v = (d.get(metric) or {}).get(q)
    return None if v is None else float(v)


def s_(x: float | None) -> float | None:
    return None if x is None else x * 1000.0


def rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    cols = [
        "load",
        "variant",
        "short TTFT p50 ms",
        "short TTFT p90 ms",
        "long done",
        "long TTFT p50 ms",
        "long E2E p50 ms",
        "long E2E p99 ms",
        "gw queue mean ms",
        "gw queue p90 ms",
        "engine queue mean ms",
        "errors",
        "out tok/s",
    ]
    out = []
    for r in results:
        sh, lo, s = r["short"], r["long"], r["summary"]
        done = f"{lo.get('completed', 0)}/{lo.get('requests', 0)}"
        errors = ", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "0"
        out.append(
            [
                f"{r['load']} {r['rate_rps_model']:g}/s",
                r["variant"]["name"],
                ms(sh, "ttft_ms", "p50"),
                ms(sh, "ttft_ms", "p90"),
                done,
                ms(lo, "ttft_ms", "p50"),
                ms(lo, "e2e_ms", "p50"),
                ms(lo, "e2e_ms", "p99"),
                s_(r["gateway_queue_s"]["mean"]),
                s_(r["gateway_queue_s"]["p90"]),
                s_(r["engine_queue_s"]["mean"]),
                errors,
                s["output_throughput_tps"],
            ]
        )
    return cols, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fcfs and priority at the 'over' load, 25 s of arrivals")
    args = ap.parse_args()
    window = 25.0 if args.quick else 36.0
    plan = [(load, v) for load, v, quick in PLAN if quick or not args.quick]
    stack = Stack(budget_s=115 if args.quick else 450)
    capacity = capacity_rps()
    data: dict[str, Any] = {
        "benchmark": "hol_priority",
        "date": now_iso(),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "git": git_commit(),
        "config": {
            "profile": PROFILE,
            "engine_max_num_seqs": ENGINE_SEQS,
            "time_scale": TIME_SCALE,
            "loads_rps_model": LOADS,
            "capacity_rps_model": capacity,
            "arrival_window_s": window,
            "workload": WORKLOAD,
            "gateway_aging_tokens_per_s": AGING_TOKENS_PER_S / TIME_SCALE,
            "gateway_queue_timeout_s": QUEUE_TIMEOUT_S * TIME_SCALE,
            "load_interval_s": 0.1,
        },
        "results": [],
    }
    console.print(
        f"[bold]hol_priority[/]: 1 simulated {PROFILE} engine, {ENGINE_SEQS} slots, time-scale {TIME_SCALE}; "
        f"mix 80% 64/32, 20% 2000/1000; capacity {capacity:.2f} req/s (model time); "
        f"{window:g} s of arrivals per run; runs: {', '.join(ld + ' ' + v['name'] for ld, v in plan)}"
    )
    for load_name, v in plan:
        t0 = time.monotonic()
        r = run_variant(stack, load_name, v, window)
        data["results"].append(r)
        s = r["summary"]
        console.print(
            f"  {load_name} {LOADS[load_name]:g}/s, {v['name']}: {s['completed']}/{s['requests']} ok, "
            f"errors {s['errors'] or 0}, {time.monotonic() - t0:.0f}s, cpu {r['cpu_cores']}"
        )
    stack.stop_all()
    cols, table_rows = rows(data["results"])
    caption = (
        f"Wall-clock ms at time-scale {TIME_SCALE} (x2 = model time); loads in model req/s (capacity "
        f"{capacity:.2f}). 'long done' = completed/sent; errors are 429 queue_timeout. Queue times from the "
        "gateway's inferline_queue_time_seconds and the engine's vllm:request_queue_time_seconds histograms "
        "(all requests, bucket-interpolated)."
    )
    console.print(rich_table("Head-of-line blocking: gateway admission policy", cols, table_rows, caption))
    verdicts = []
    for load_name in LOADS:
        fcfs = next((r for r in data["results"] if r["load"] == load_name and r["variant"] is _FCFS), None)
        prio = next((r for r in data["results"] if r["load"] == load_name and r["variant"] is _PRIO), None)
        if not (fcfs and prio):
            continue
        a, b = ms(fcfs["short"], "ttft_ms", "p50"), ms(prio["short"], "ttft_ms", "p50")
        c, d = ms(fcfs["short"], "ttft_ms", "p90"), ms(prio["short"], "ttft_ms", "p90")
        if a and b and c and d:
            verdicts.append(
                f"{load_name} ({LOADS[load_name]:g} req/s): short TTFT with priority vs fcfs p50 {a / b:.1f}x lower, "
                f"p90 {c / d:.1f}x lower; long requests completed {prio['long'].get('completed')}/"
                f"{prio['long'].get('requests')} (fcfs {fcfs['long'].get('completed')}/{fcfs['long'].get('requests')})."
            )
    for line in verdicts:
        console.print(line)
    data["verdict"] = verdicts
    md = header("hol_priority: head-of-line blocking, FCFS vs priority admission", data)
    md += (
        f"One simulated `{PROFILE}` engine with {ENGINE_SEQS} slots (time-scale {TIME_SCALE}) behind the gateway; "
        f"open-loop Poisson arrivals for {window:g} s per run (seed {WORKLOAD['seed']}): 80% short (64 words in, "
        f"32 out), 20% long (2000 words in, 1000 out); the engine serves ~{capacity:.2f} req/s of this mix "
        f"(model time). Gateway: aging {AGING_TOKENS_PER_S / TIME_SCALE:g} tok/s, queue timeout "
        f"{QUEUE_TIMEOUT_S * TIME_SCALE:g} s (the defaults scaled by the time-scale), load_interval_s 0.1.\n\n"
    )
    md += md_table(cols, table_rows) + "\n" + caption + "\n"
    if verdicts:
        md += "\n" + "\n".join(f"- {v}" for v in verdicts) + "\n"
    j, m = write_results("hol_priority", data, md, quick=args.quick)
    console.print(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    main_guard(main)
