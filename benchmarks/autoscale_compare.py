"""The seed's autoscaling (scale up at 75% GPU utilization, down at 30% after 300 s) against alternatives.

Each configuration runs on the same two traces in `inferline autoscale simulate`'s discrete-event model
(h100-llama8b engines, 2-10 replicas, HPA v1.34 defaults, 15 s scrapes, 30 s DCGM refresh, pods ready
2 + 30 + 60 s after the decision: node, image pull, model load):
  spike    20 req/s, 80 req/s for 15 minutes from minute 10, back to 20; 40 minutes
  diurnal  5 -> 80 -> 5 req/s over a (compressed) one-hour day
prompts lognormal(512, cv 0.5), outputs lognormal(256, cv 0.5) tokens. Ranked by minutes whose p95 TTFT
exceeds 800 ms (rejections count as late), then GPU-hours.

Configurations (`inferline autoscale render NAME` prints each as a manifest):
  seed           Pods DCGM_FI_DEV_GPU_UTIL 75, behavior.scaleDown tolerance 0.6 (= down below 30%), 300 s window
  gpu            Pods DCGM_FI_DEV_GPU_UTIL 75 (the seed note's HPA manifest, no scale-down threshold)
  queue          External inferline_queue_depth 5 per replica, 300 s down window
  kv             Pods vllm:kv_cache_usage_perc 0.3, 300 s down window
  running        Pods vllm:num_requests_running 192 (75% of 256 slots), 300 s down window
  running-low    Pods vllm:num_requests_running 96 (37.5% of the slots: headroom for ramps), 300 s down window
  running+queue  running (192) and queue
  keda-queue     running+queue through KEDA (30 s polling)
  static:6       six replicas, no autoscaling: a fleet sized for the 80 req/s peak (reference)

    .venv/bin/python benchmarks/autoscale_compare.py [--quick] [--jobs 2] [--only spike|diurnal]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _autoscale import RESULTS, git_commit, machine, md_table, now_iso, rich_table, write_results
from rich.console import Console

from inferline.autoscale.configs import resolve_autoscaler
from inferline.autoscale.des import SimRun, SimSettings, Simulation
from inferline.autoscale.hpa import K8S_VERSION
from inferline.autoscale.lifecycle import Dist
from inferline.autoscale.plots import compare_series_plot, run_plot, series, slug
from inferline.autoscale.report import rank, summarize
from inferline.autoscale.traffic import TrafficShape, synthesize
from inferline.sim.profiles import H100_LLAMA8B

CONFIGS = ("seed", "gpu", "queue", "kv", "running", "running-low", "running+queue", "keda-queue", "static:6")
TRACES = {
    "spike": ("spike:base=20,peak=80,at=600,for=900", 2400.0),
    "diurnal": ("diurnal:base=5,peak=80,period=3600", 3600.0),
}
QUICK = {
    "spike": ("spike:base=10,peak=40,at=120,for=240", 600.0),
    "diurnal": ("diurnal:base=3,peak=40,period=900", 900.0),
}
console = Console(width=170)


def one(
    trace: str, spec: str, duration: float, name: str, plot_dir: str | None
) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    tr = synthesize(
        TrafficShape.parse(spec), duration, Dist("lognormal", 512, 0.5), Dist("lognormal", 256, 0.5), seed=7
    )
    tr = tr.clipped(H100_LLAMA8B.max_model_len)
    cfg = resolve_autoscaler(name, H100_LLAMA8B.max_num_seqs)
    run: SimRun = Simulation(tr, cfg, SimSettings(H100_LLAMA8B, seed=7)).run()
    s = summarize(run)
    s["trace"] = trace
    png = None
    if plot_dir is not None:
        png = str(run_plot(run, Path(plot_dir) / f"autoscale_compare_{trace}_{slug(name)}.png", 60.0))
    return s, png, series(run, 60.0)


COLS = (
    "config",
    "SLO min",
    "late/rejected",
    "rejected",
    "TTFT p50 ms",
    "TTFT p95 ms",
    "GPU-h",
    "mean Ready",
    "max",
    "ups",
    "downs",
    "1st breach->decision s",
    "1st breach->capacity s",
)


def rows_of(summaries: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for s in rank(summaries):
        first = s["first_scale_up"] or {}
        out.append(
            [
                s["name"],
                s["slo_violation_minutes"],
                f"{s['requests_over_slo_ratio']:.1%}",
                s["rejected"],
                s["ttft_ms"]["p50"],
                s["ttft_ms"]["p95"],
                s["gpu_hours"],
                s["mean_ready_replicas"],
                s["max_replicas"],
                s["scale_ups"],
                s["scale_downs"],
                first.get("to_decision_s"),
                first.get("to_capacity_s"),
            ]
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short, light traces (smoke run; writes *.quick.*)")
    ap.add_argument("--jobs", type=int, default=1, help="simulations in parallel (processes)")
    ap.add_argument("--only", choices=sorted(TRACES), help="one trace only")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated presets / files")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    args = ap.parse_args()
    traces = QUICK if args.quick else TRACES
    if args.only:
        traces = {args.only: traces[args.only]}
    configs = [c for c in args.configs.split(",") if c]
    plot_dir = None if args.no_plots else str(RESULTS)
    started = now_iso()
    t0 = time.perf_counter()
    jobs = [(trace, spec, dur, name) for trace, (spec, dur) in traces.items() for name in configs]
    results: list[tuple[dict[str, Any], str | None, dict[str, Any]]] = []
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(one, *j, plot_dir) for j in jobs]
            for f, j in zip(futures, jobs, strict=True):
                results.append(f.result())
                console.print(f"[dim]{j[0]} {j[3]}: done[/]")
    else:
        for j in jobs:
            results.append(one(*j, plot_dir))
            s = results[-1][0]
            console.print(
                f"[dim]{j[0]} {j[3]}: {s['slo_violation_minutes']} SLO min, {s['gpu_hours']} GPU-h "
                f"({s['wall_s']:.0f} s wall, {s['speedup']}x)[/]"
            )
    wall = time.perf_counter() - t0
    md = [
        f"# autoscale_compare\n\n{started}, commit {git_commit()}, {K8S_VERSION} HPA model, load average "
        f"{machine()['loadavg']}; {wall:.0f} s wall for {len(jobs)} simulations.\n"
    ]
    data: dict[str, Any] = {
        "benchmark": "autoscale_compare",
        "started_at": started,
        "commit": git_commit(),
        "machine": machine(),
        "kubernetes": K8S_VERSION,
        "wall_s": round(wall, 1),
        "traces": {k: {"traffic": v[0], "duration_s": v[1]} for k, v in traces.items()},
        "runs": [s for s, _, _ in results],
        "plots": [p for _, p, _ in results if p],
    }
    for trace, (spec, dur) in traces.items():
        summaries = [s for s, _, _ in results if s["trace"] == trace]
        title = f"{trace}: {spec}, {dur / 60:.0f} min, h100-llama8b, best first"
        console.print(rich_table(title, COLS, rows_of(summaries), caption="TTFT of served requests; times in s"))
        md.append(f"## {title}\n\n" + md_table(COLS, rows_of(summaries)) + "\n")
        sim_s = sum(s["simulated_s"] for s in summaries)
        md.append(
            f"{len(summaries)} runs, {sim_s:,.0f} simulated s, {sum(s['wall_s'] for s in summaries):.0f} s wall.\n"
        )
        if plot_dir is not None:
            items = [ser for s, _, ser in results if s["trace"] == trace]
            data["plots"].append(str(compare_series_plot(items, Path(plot_dir) / f"autoscale_compare_{trace}.png")))
    j, m = write_results("autoscale_compare", data, "\n".join(md), args.quick)
    console.print(f"wrote {j} and {m}" + (f"; plots in {plot_dir}" if plot_dir else ""))


if __name__ == "__main__":
    main()
