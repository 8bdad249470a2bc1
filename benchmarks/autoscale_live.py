"""Live scale-up vs the simulator: real processes scaled by the live HPA controller, then the same trace simulated.

The live run (src/inferline/autoscale/liverun.py), all on loopback:
  `inferline serve` discovering its engines from a DNS name answered by a real DNS server (dnslib);
  `inferline sim` engines (SIMULATED: h100-llama8b, max_num_seqs 8, --time-scale 10 so that the engines'
  own CPU stays small on a busy machine), each on its own 127.0.0.N, started with a 15 s start-up delay
  (image pull + model load), in the DNS answer once Ready, drained on scale-down;
  a real Prometheus (scripts/prometheus.sh) with `inferline observe scrape-config`'s configuration,
  scraping every second (this run's own setting);
  the live controller: the simulator's HorizontalController (Kubernetes v1.34's algorithm) every 5 s (this
  run's own sync period) against Prometheus' answers, HPA vllm:num_requests_running AverageValue 4 per pod
  (half the slots), 1-6 replicas, scale-down window 30 s (the run's own; 300 s is the default);
  load: `inferline bench`, an open-loop step from 0 to 3 req/s for 120 s (128-token prompts, 64-token
  answers, ignore_eos), requests saved.
Then `inferline autoscale simulate` replays the bench's saved requests with the same settings (HPA values,
sync period and the live controller's phase against the traffic, scrape interval, start-up delay, discovery
re-resolve, profile with its time scale, max_num_seqs, queue depth/timeout, KV admission ratio), in
process and through the command line (the two must agree), and both are measured alike
(livecompare.py). Target: simulated within 25% of measured for time-to-decision, time-to-ready-capacity,
replicas over time (mean Ready replicas during the load) and TTFT p95 during the breach.

Three live runs (seeds 0, 1, 2; --runs N), each compared with its own simulation. Also reported: the range
the simulation predicts at every phase of the sync period (what it says without knowing the phase).

Writes results/autoscale_live.{json,md,png} (run 2, 3: autoscale_live.runN.png); the raw live runs (every
request, pass and series) stay in results/tmp-autoscale-live/run-N/ (git-ignored) and `--from-run FILE`
analyses one again without running it again.

    .venv/bin/python benchmarks/autoscale_live.py [--quick] [--runs 3] [--rate 3] [--duration 120] [--from-run FILE]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import orjson
from _autoscale import RESULTS, fmt, git_commit, machine, md_table, now_iso, rich_table, write_results
from rich.console import Console

from inferline.autoscale import livecompare as lc
from inferline.autoscale.hpa import K8S_VERSION
from inferline.autoscale.liveplot import live_vs_sim_plot
from inferline.autoscale.liverun import LiveRun, LiveSettings, run_live
from inferline.autoscale.report import summarize

ROOT = Path(__file__).resolve().parents[1]
console = Console(width=160)


def settings_from(args: argparse.Namespace) -> LiveSettings:
    base = LiveSettings()
    if args.quick:
        base = LiveSettings(
            autoscaling={**base.autoscaling, "maxReplicas": 4, "scaleDownStabilizationSeconds": 15},
            startup_delay_s=8.0,
            rate=2.0,
            duration_s=45.0,
            cooldown_s=60.0,
        )
    values = dict(base.autoscaling)
    if args.max_replicas is not None:
        values["maxReplicas"] = args.max_replicas
    if args.target is not None:
        values["targetRunningRequests"] = args.target
    changes: dict[str, Any] = {"autoscaling": values}
    for name in ("rate", "duration_s", "startup_delay_s", "time_scale", "sync_period_s", "seed"):
        v = getattr(args, name)
        if v is not None:
            changes[name] = v
    return LiveSettings(**{**base.to_json(), **changes})


def facts_load(run: LiveRun) -> str:
    loads = [x[1] for x in run.loadavg]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"


def ttft_table(live: lc.Side, sim: lc.Side) -> dict[str, Any]:
    """TTFT p50/p95 (ms) per 10 s of arrivals, live and simulated (turned away counts as infinitely late)."""
    out: dict[str, Any] = {}
    for side in (live, sim):
        b = lc.ttft_bins(side, 10.0)
        out[side.name] = {
            "t": b["t"].tolist(),
            "count": b["count"].tolist(),
            "p50_ms": [None if not np.isfinite(x) else round(float(x) * 1000, 1) for x in b["p50"]],
            "p95_ms": [None if not np.isfinite(x) else round(float(x) * 1000, 1) for x in b["p95"]],
        }
    return out


def prom_lag(live: lc.Side) -> float | None:
    """Mean seconds from the gateway's GET /backends showing a new engine's first request to Prometheus' series
    (inferline_backend_in_flight_requests) showing it: the same event, read through 1 s scrapes."""
    xs = [
        p["first_request_prom_s"] - p["first_request_s"]
        for p in live.pods
        if p.get("first_request_prom_s") is not None and p["first_request_s"] is not None and (p["created_s"] or 0) > 0
    ]
    return round(float(np.mean(xs)), 3) if xs else None


def run_cli(replay: lc.Replay, out: Path) -> dict[str, Any]:
    """The same simulation through `inferline autoscale simulate` (its results.json summary)."""
    exe = Path(sys.executable).parent / "inferline"
    cmd = [str(exe), *replay.argv, "--bin", "10", "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"autoscale simulate failed: {done.stderr[-2000:]}")
    summary: dict[str, Any] = orjson.loads((out / "results.json").read_bytes())["runs"][0]["summary"]
    return summary


def analyse(run: LiveRun, workdir: Path, png: Path) -> dict[str, Any]:
    """One live run against its simulation: the comparison, the facts of the run, the plot."""
    s = run.settings
    replay = lc.simulation_of(run, workdir / "sim")
    t1 = time.perf_counter()
    sim = lc.simulate(replay)
    sim_wall = time.perf_counter() - t1
    cli = run_cli(replay, workdir / "sim-cli")
    mine = summarize(sim)
    consistent = cli["first_scale_up"] == mine["first_scale_up"] and cli["outcomes"] == mine["outcomes"]
    live, simulated = lc.live_side(run), lc.sim_side(sim)
    c = lc.compare(live, simulated)
    sweep = lc.phase_sweep(replay)
    live_vs_sim_plot(
        live,
        simulated,
        png,
        f"live (solid) vs simulated (dashed): {s.rate:g} req/s step for {s.duration_s:g} s, seed {s.seed}; "
        f"{replay.autoscaler.describe()}\nsync {s.sync_period_s:g} s, scrape {s.scrape_interval_s:g} s, start-up "
        f"{s.startup_delay_s:g} s; engines {s.profile} x{s.time_scale:g} time, {s.max_num_seqs} seqs; "
        f"load average {facts_load(run)}",
    )
    loads = [x[1] for x in run.loadavg]
    bench_summary = run.bench["runs"][0]["summary"]
    facts = {
        "seed": s.seed,
        "date": datetime.fromtimestamp(run.t0_unix, UTC).isoformat(timespec="seconds"),
        "requests_sent": bench_summary["requests"],
        "completed": bench_summary["completed"],
        "errors": bench_summary["errors"],
        "cancelled": bench_summary["cancelled"],
        "lost": c["all_requests"]["live"].get("lost", 0),
        "gateway_logged_requests": run.gateway_requests,
        "startup_excess_s": live.extra["startup_excess_s"],
        "join_latency_s": live.extra["join_s"],
        "controller_passes": len(run.passes),
        "controller_pass_ms_p50": round(float(np.median([p["took_s"] for p in run.passes])) * 1000, 1),
        "controller_pass_ms_max": round(max(p["took_s"] for p in run.passes) * 1000, 1),
        "sync_phase_s": replay.settings.hpa_phase_s,
        "first_request_prometheus_lag_s": prom_lag(live),
        "cpu_s": run.cpu_s,
        "load_1min": {"min": min(loads), "mean": round(float(np.mean(loads)), 2), "max": max(loads)},
        "wall": run.wall,
        "notes": run.notes,
    }
    return {
        "settings": s.to_json(),
        "facts": facts,
        "comparison": c,
        "phase_sweep": sweep,
        "replicas_over_time": lc.replicas_table(live, simulated),
        "simulate_command": "inferline " + " ".join(a.replace(str(ROOT) + "/", "") for a in replay.argv),
        "cli_agrees": consistent,
        "sim_wall_s": round(sim_wall, 3),
        "simulated_summary": mine,
        "live_passes": [p for p in run.passes if p["desired"] != p["current"]],
        "live_pods": run.pods,
        "gateway_events": run.gateway_events,
        "loadavg": run.loadavg,
        "ttft_10s": ttft_table(live, simulated),
        "plot": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png),
        "describe": replay.autoscaler.describe(),
    }


COLS = ["measure", "live", "simulated", "sim - live", "error", "within 25%"]
REP_COLS = ["t s", "desired live", "Ready live", "desired sim", "Ready sim"]


def comparison_rows(c: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for r in c["rows"]:
        diff = None if r["live"] is None or r["simulated"] is None else r["simulated"] - r["live"]
        unit = f" ({r['unit']})" if r["unit"] else ""
        err = None if r["error"] is None else f"{r['error'] * 100:+.1f}%"
        within = "–" if r["within"] is None else ("yes" if r["within"] else "NO")
        rows.append([r["measure"] + unit + (" *" if r["target"] else ""), r["live"], r["simulated"], diff, err, within])
    return rows


def summary_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """One row per target measure: live / simulated (error) for each run."""
    cols = ["target measure", *(f"run {i + 1} (seed {r['facts']['seed']})" for i, r in enumerate(results))]
    rows: list[list[Any]] = []
    for k, r0 in enumerate(results[0]["comparison"]["rows"]):
        if not r0["target"]:
            continue
        row: list[Any] = [r0["measure"] + (f" ({r0['unit']})" if r0["unit"] else "")]
        for res in results:
            r = res["comparison"]["rows"][k]
            err = "–" if r["error"] is None else f"{r['error'] * 100:+.1f}%"
            row.append(f"{fmt(r['live'])} / {fmt(r['simulated'])} ({err})")
        rows.append(row)
    rows.append(["targets within 25%", *(f"{r['comparison']['targets_met']} of 4" for r in results)])
    rows.append(["load average (1 min) during the run", *(
        f"{r['facts']['load_1min']['min']}-{r['facts']['load_1min']['max']}" for r in results)])  # fmt: skip
    return cols, rows


def cpu_text(cpu: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if v is not None) or "not recorded"


def run_markdown(i: int, res: dict[str, Any], detail: bool) -> list[str]:
    f, c, sw = res["facts"], res["comparison"], res["phase_sweep"]
    s = res["settings"]
    caption = (
        f"* = target measure; {c['targets_met']} of {c['targets']} targets within 25%. "
        f"Mean |desired live - desired simulated| = {c['replicas_mean_abs_diff']} replicas."
    )
    md = [
        f"#### Run {i + 1}: seed {f['seed']}, {f['date']}, load average (1 min) {f['load_1min']['min']}-"
        f"{f['load_1min']['max']} (mean {f['load_1min']['mean']})",
        "",
        md_table(COLS, comparison_rows(c)),
        "",
        caption,
        "",
    ]
    if sw.get("to_decision_s"):
        d, q, t = sw["to_decision_s"], sw.get("to_first_request_s", {}), sw.get("ttft_p95_breach_ms", {})
        md += [
            f"Not knowing the controller's phase (the simulation at each of {sw['phases']} phases of the "
            f"{s['sync_period_s']:g} s sync period): breach -> decision {fmt(d['min'])}-{fmt(d['max'])} s (mean "
            f"{fmt(d['mean'])}), -> first request on new capacity {fmt(q.get('min'))}-{fmt(q.get('max'))} s, TTFT "
            f"p95 during the breach {fmt(t.get('min'))}-{fmt(t.get('max'))} ms.",
            "",
        ]
    md += [
        f"Live: {f['requests_sent']} requests, {f['completed']} completed, errors {f['errors'] or 'none'}, "
        f"cancelled {f['cancelled']}, lost {f['lost']}; pods Ready {f['startup_excess_s']} s after the start-up "
        f"delay on average; the gateway joined a new engine {f['join_latency_s']} s after it entered DNS; "
        f"{f['controller_passes']} controller passes of {f['controller_pass_ms_p50']} ms (max "
        f"{f['controller_pass_ms_max']} ms); first pass {f['sync_phase_s']} s after the first request; "
        f"Prometheus' gateway series showed each new engine's first request {f['first_request_prometheus_lag_s']} s "
        f"after GET /backends did; wall: setup {f['wall'].get('setup_s')} s, load + scale-down "
        f"{f['wall'].get('run_s')} s; CPU seconds: {cpu_text(f.get('cpu_s') or {})}. The in-process simulation "
        f"and the command line agree: {'yes' if res['cli_agrees'] else 'NO'}.",
        "",
    ]
    if f["notes"]:
        md += ["Notes: " + "; ".join(f["notes"]), ""]
    if detail:
        md += [
            "Replicas over time (every 10 s from the first request):",
            "",
            md_table(REP_COLS, res["replicas_over_time"]),
            "",
            "Simulated with:",
            "",
            "```",
            res["simulate_command"],
            "```",
            "",
        ]
    return md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one ~2-minute run (writes autoscale_live.quick.*)")
    ap.add_argument("--runs", type=int, help="live runs, seeds SEED, SEED+1, ... (default 3; --quick 1)")
    ap.add_argument("--rate", type=float, help="requests/s of the load step (default 3)")
    ap.add_argument("--duration", dest="duration_s", type=float, help="seconds of load (default 120)")
    ap.add_argument("--startup-delay", dest="startup_delay_s", type=float, help="pod start-up delay s (default 15)")
    ap.add_argument("--time-scale", dest="time_scale", type=float, help="engines' --time-scale (default 10)")
    ap.add_argument("--sync-period", dest="sync_period_s", type=float, help="HPA sync period s (default 5)")
    ap.add_argument("--max-replicas", type=int, help="maxReplicas (default 6)")
    ap.add_argument("--target", type=float, help="targetRunningRequests per pod (default 4)")
    ap.add_argument("--seed", type=int, help="seed of the load and the engines (default 0)")
    ap.add_argument(
        "--from-run", type=Path, action="append", help="analyse saved live runs (run.json; repeatable) instead"
    )
    ap.add_argument("--workdir", type=Path, help="where logs and raw runs go (default results/tmp-autoscale-live)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    suffix = ".quick" if args.quick else ""
    workdir = args.workdir or RESULTS / ("tmp-autoscale-live" + suffix)
    t0 = time.perf_counter()
    runs: list[tuple[LiveRun, Path]] = []
    if args.from_run:
        for path in args.from_run:
            runs.append((LiveRun.from_json(orjson.loads(path.read_bytes())), path.parent))
    else:
        base = settings_from(args)
        n = args.runs or (1 if args.quick else 3)
        for i in range(n):
            settings = LiveSettings(**{**base.to_json(), "seed": base.seed + i})
            rundir = workdir / f"run-{i + 1}"
            console.rule(f"live run {i + 1} of {n} (seed {settings.seed})")
            say = lambda m: console.print(f"[dim]{m}[/]")  # noqa: E731
            run = run_live(settings, rundir, ROOT / "scripts" / "prometheus.sh", say)
            (rundir / "run.json").write_bytes(orjson.dumps(run.to_json(), option=orjson.OPT_SERIALIZE_NUMPY))
            runs.append((run, rundir))
    live_wall = time.perf_counter() - t0
    results = []
    for i, (run, rundir) in enumerate(runs):
        png = RESULTS / (f"autoscale_live{suffix}" + ("" if i == 0 else f".run{i + 1}") + ".png")
        res = analyse(run, rundir, png)
        results.append(res)
        console.print(rich_table(f"run {i + 1}: live vs simulated (seconds from the breach unless noted)", COLS,
                                 comparison_rows(res["comparison"])))  # fmt: skip
    console.print(rich_table("replicas over time, run 1", REP_COLS, results[0]["replicas_over_time"]))
    scols, srows = summary_rows(results)
    console.print(rich_table("target measures: live / simulated (error)", scols, srows))
    console.print(f"simulation (run 1): {results[0]['simulate_command']}")
    first = results[0]
    s0 = first["settings"]
    load_start = runs[0][0].loadavg[0][1:] if runs[0][0].loadavg else machine()["loadavg"]
    data = {
        "benchmark": "autoscale_live",
        "analysed": now_iso(),
        "commit": git_commit(),
        "kubernetes": K8S_VERSION,
        "machine": {**machine(), "loadavg_at_start": load_start},
        "runs": results,
        "summary": {"columns": scols, "rows": srows},
        "wall_s": round(live_wall, 1),
    }
    md = [
        "# autoscale_live: live scale-up vs `inferline autoscale simulate`",
        "",
        f"{first['facts']['date']} · commit {data['commit']} · {machine()['cpu_count']} cores · "
        f"{len(results)} live run(s) · Kubernetes {K8S_VERSION} HPA algorithm",
        "",
        f"Live: `inferline serve` + DNS discovery, `inferline sim` engines ({s0['profile']}, --time-scale "
        f"{s0['time_scale']:g}, max_num_seqs {s0['max_num_seqs']}) on 127.0.0.N, start-up delay "
        f"{s0['startup_delay_s']:g} s, real Prometheus scraping every {s0['scrape_interval_s']:g} s, live HPA every "
        f"{s0['sync_period_s']:g} s: {first['describe']}. Load: `inferline bench` step 0 -> {s0['rate']:g} req/s for "
        f"{s0['duration_s']:g} s ({s0['input_len']}-token prompts, {s0['output_len']}-token answers). Simulated: the "
        "bench's saved requests, the same settings (command below), the live controller's phase.",
        "",
        "#### Target measures, every run: live / simulated (simulated error)",
        "",
        md_table(scols, srows),
        "",
    ]
    for i, res in enumerate(results):
        md += run_markdown(i, res, detail=i == 0)
    j, m = write_results("autoscale_live", data, "\n".join(md), quick=args.quick)
    console.print(f"wrote {j}, {m}, " + ", ".join(r["plot"] for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
