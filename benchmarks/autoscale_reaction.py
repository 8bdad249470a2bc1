"""How fast does an HPA add serving capacity after a threshold breach, as a function of the model-load time?

The seed note says: "Confirm HPA scales pods within 60-90 seconds of threshold breach". This sweeps the
pod's model-load time (engine start + weights + warm-up, until /health passes) and reports, for the
first scale-up after a load step, the seconds from the breach to the HPA's decision, to the first new
pod Ready, to the capacity that decision asked for, to the fleet the HPA finally settles on, and to the
first 30 s window whose p95 TTFT is back under 800 ms (and stays there for 2 minutes); and what users saw
meanwhile (TTFT of requests arriving between the breach and the recovery; share late or rejected).

Setup (simulated, `inferline autoscale simulate`'s discrete-event model):
  h100-llama8b engines (256 slots), 2 idle replicas Ready, 0 -> 40 req/s at t=120 s, prompts 512 and outputs
  256 tokens (one engine serves ~17 req/s of these at full batch: the fleet needs a third replica, and the
  first scale-up of either autoscaler orders exactly that); HPA v1.34 defaults (15 s sync, 0.1 tolerance);
  Prometheus scrapes every 15 s, the DCGM exporter refreshes every 30 s; pods wait 2 s for a node and
  pull the image in --pull seconds (0: cached on the node), readiness probe every 5 s, the gateway routes
  2 s after Ready. Two autoscalers: `running` (vllm:num_requests_running per pod, target 192 = 75% of
  the slots) and `seed` (DCGM GPU utilization 75%, scale down below 30% after 300 s).

    .venv/bin/python benchmarks/autoscale_reaction.py [--quick] [--pull 0] [--load 10,30,60,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _autoscale import git_commit, machine, md_table, now_iso, rich_table, run, window_stats, write_results
from rich.console import Console

from inferline.autoscale.configs import load_autoscaler
from inferline.autoscale.des import SimSettings
from inferline.autoscale.hpa import K8S_VERSION
from inferline.autoscale.lifecycle import Dist, PodTimings
from inferline.autoscale.report import ttft_series
from inferline.autoscale.traffic import TrafficShape, synthesize
from inferline.sim.profiles import H100_LLAMA8B

LOAD_TIMES = (10, 20, 30, 45, 60, 90, 120, 180, 300)
STEP_AT = 120.0
TRAFFIC = f"step:base=0,peak=40,at={STEP_AT:g}"
CONFIGS = ("running", "seed")
console = Console(width=160)


def sweep(load_times: list[float], pull_s: float, duration: float) -> list[dict[str, Any]]:
    tr = synthesize(TrafficShape.parse(TRAFFIC), duration, Dist("fixed", 512), Dist("fixed", 256), seed=1)
    rows: list[dict[str, Any]] = []
    for name in CONFIGS:
        cfg = load_autoscaler(name, H100_LLAMA8B.max_num_seqs)
        for load in load_times:
            timings = PodTimings(Dist("fixed", 2.0), Dist("fixed", pull_s), Dist("fixed", load), 5.0, 2.0, 30.0)
            t0 = time.perf_counter()
            r = run(tr, cfg, SimSettings(H100_LLAMA8B, timings=timings, seed=1))
            wall = time.perf_counter() - t0
            tl = r.timeline
            up_tol = r.settings.controller.tolerance
            after = (tl["t"] >= STEP_AT) & (tl["breach_ratio"] > 1.0 + up_tol)
            breach = float(tl["t"][after][0]) if after.any() else None
            dec = next(
                (d for d in r.decisions if breach is not None and d.time_s >= breach and d.desired > d.current), None
            )
            row: dict[str, Any] = {"config": name, "load_s": load, "pull_s": pull_s, "wall_s": round(wall, 2)}
            early = [d for d in r.decisions if d.time_s < STEP_AT and d.desired > d.current]
            row["scale_ups_before_step"] = len(early)
            if breach is None or dec is None:
                row.update(breach_s=None, to_decision_s=None, to_first_ready_s=None, to_capacity_s=None)
                rows.append(row)
                continue
            new_pods = [p for p in r.pods if p.created_s == dec.time_s and p.ready_s >= 0]
            first_ready = min((p.ready_s for p in new_pods), default=None)
            cap = (tl["t"] >= dec.time_s) & (tl["ready"] >= dec.desired)
            capacity = float(tl["t"][cap][0]) if cap.any() else None
            final_t, final_n = _final_capacity(r, breach)
            recovered = _recovery(r, breach)
            gap = window_stats(r, breach, recovered if recovered is not None else r.end_s)
            row.update(
                breach_s=round(breach - STEP_AT, 1),
                to_decision_s=_rel(dec.time_s, breach),
                to_first_ready_s=_rel(first_ready, breach),
                to_capacity_s=_rel(capacity, breach),
                replicas=f"{dec.current}->{dec.desired}",
                final_replicas=final_n,
                to_final_capacity_s=_rel(final_t, breach),
                to_recovery_s=_rel(recovered, breach),
                within_90s=first_ready is not None and first_ready - breach <= 90.0,
                gap=gap,
            )
            rows.append(row)
            console.print(
                f"[dim]{name} load {load:g}s: decision +{row['to_decision_s']} s, "
                f"first Ready +{row['to_first_ready_s']} s, "
                f"capacity +{row['to_capacity_s']} s, {final_n} Ready +{row['to_final_capacity_s']} s, TTFT back under "
                f"SLO +{row['to_recovery_s']} s; gap p95 TTFT {gap['ttft_p95_ms']} ms ({wall:.1f} s wall)[/]"
            )
    return rows


def _final_capacity(r: Any, breach_s: float) -> tuple[float | None, int]:
    """When the Ready count first reached the largest spec.replicas ordered after the breach."""
    tl = r.timeline
    after = tl["t"] >= breach_s
    target = int(tl["desired"][after].max())
    hit = after & (tl["ready"] >= target)
    return (float(tl["t"][hit][0]) if hit.any() else None), target


def _recovery(r: Any, breach_s: float, hold_s: float = 120.0) -> float | None:
    """Start of the first 30 s arrival window after the breach whose p95 TTFT (rejections as late) is under
    the SLO, with every window of the next HOLD_S under it too."""
    s = ttft_series(r, 30.0)
    ok = ~s["violation"] & (s["count"] > 0)
    starts = s["t"] - 15.0
    for i, t in enumerate(starts):
        if t < breach_s or not ok[i]:
            continue
        window = (starts >= t) & (starts < t + hold_s)
        if ok[window].all():
            return float(t)
    return None


def _rel(t: float | None, base: float) -> float | None:
    return None if t is None else round(t - base, 1)


COLS = (
    "config",
    "model load s",
    "breach after step s",
    "to decision s",
    "to 1st pod Ready s",
    "to capacity s",
    "settles at",
    "to settled fleet Ready s",
    "to TTFT < SLO s",
    "1st pod within 90 s",
    "TTFT p95 in gap ms",
    "late or rejected in gap",
)


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        gap = r.get("gap") or {}
        late = gap.get("late_or_rejected")
        out.append(
            [
                r["config"],
                r["load_s"],
                r["breach_s"],
                r["to_decision_s"],
                r["to_first_ready_s"],
                r["to_capacity_s"],
                r.get("final_replicas"),
                r.get("to_final_capacity_s"),
                r.get("to_recovery_s"),
                r.get("within_90s"),
                gap.get("ttft_p95_ms"),
                None if late is None else f"{late:.0%}",
            ]
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three load times only (smoke run; writes *.quick.*)")
    ap.add_argument("--pull", type=float, default=0.0, help="image pull seconds (0: image cached on the node)")
    ap.add_argument("--load", default=None, help="comma-separated model-load times in s (default: the full sweep)")
    ap.add_argument("--duration", type=float, default=900.0, help="simulated seconds of traffic per run")
    args = ap.parse_args()
    loads = [float(x) for x in args.load.split(",")] if args.load else list(LOAD_TIMES)
    if args.quick:
        loads = [30.0, 60.0, 120.0]
    started = now_iso()
    t0 = time.perf_counter()
    rows = sweep(loads, args.pull, args.duration)
    wall = time.perf_counter() - t0
    title = f"Scale-up reaction vs model-load time (pull {args.pull:g} s, {TRAFFIC})"
    console.print(
        rich_table(
            title,
            COLS,
            table_rows(rows),
            caption="seconds after the threshold breach; gap = breach -> TTFT back under the SLO",
        )
    )
    simulated = len(rows) * args.duration
    data = {
        "benchmark": "autoscale_reaction",
        "started_at": started,
        "commit": git_commit(),
        "machine": machine(),
        "kubernetes": K8S_VERSION,
        "traffic": TRAFFIC,
        "profile": H100_LLAMA8B.name,
        "pull_s": args.pull,
        "wall_s": round(wall, 1),
        "speedup": round(simulated / wall, 1),
        "rows": rows,
    }
    md = (
        f"# autoscale_reaction\n\n{started}, commit {data['commit']}, {K8S_VERSION} HPA model, "
        f"load average {data['machine']['loadavg']}; {simulated:,.0f} simulated s in {wall:.0f} s wall "
        f"({data['speedup']}x real time).\n\n## {title}\n\n" + md_table(COLS, table_rows(rows)) + "\n"
    )
    name = "autoscale_reaction" if args.pull == 0 else f"autoscale_reaction_pull{args.pull:g}"
    j, m = write_results(name, data, md, args.quick)
    console.print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
