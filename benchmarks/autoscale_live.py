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

Writes results/autoscale_live.{json,md,png}; the raw live run (every request, pass and series) stays in
results/tmp-autoscale-live/ (git-ignored) and `--from-run` analyses it again without running it again.

    .venv/bin/python benchmarks/autoscale_live.py [--quick] [--rate 3] [--duration 120] [--from-run FILE]
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
from _autoscale import RESULTS, git_commit, machine, md_table, now_iso, rich_table, write_results
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


def run_cli(replay: lc.Replay, out: Path) -> dict[str, Any]:
    """The same simulation through `inferline autoscale simulate` (its results.json summary)."""
    exe = Path(sys.executable).parent / "inferline"
    cmd = [str(exe), *replay.argv, "--bin", "10", "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"autoscale simulate failed: {done.stderr[-2000:]}")
    summary: dict[str, Any] = orjson.loads((out / "results.json").read_bytes())["runs"][0]["summary"]
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a ~3-minute run (writes autoscale_live.quick.*)")
    ap.add_argument("--rate", type=float, help="requests/s of the load step (default 3)")
    ap.add_argument("--duration", dest="duration_s", type=float, help="seconds of load (default 120)")
    ap.add_argument("--startup-delay", dest="startup_delay_s", type=float, help="pod start-up delay s (default 15)")
    ap.add_argument("--time-scale", dest="time_scale", type=float, help="engines' --time-scale (default 10)")
    ap.add_argument("--sync-period", dest="sync_period_s", type=float, help="HPA sync period s (default 5)")
    ap.add_argument("--max-replicas", type=int, help="maxReplicas (default 6)")
    ap.add_argument("--target", type=float, help="targetRunningRequests per pod (default 4)")
    ap.add_argument("--seed", type=int, help="seed of the load and the engines (default 0)")
    ap.add_argument("--from-run", type=Path, help="analyse a saved live run (run.json) instead of running one")
    ap.add_argument("--workdir", type=Path, help="where logs and the raw run go (default results/tmp-autoscale-live)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    workdir = args.workdir or RESULTS / ("tmp-autoscale-live" + (".quick" if args.quick else ""))
    load_at_start = machine()["loadavg"]
    t0 = time.perf_counter()
    if args.from_run is not None:
        run = LiveRun.from_json(orjson.loads(args.from_run.read_bytes()))
        workdir = args.from_run.parent
    else:
        settings = settings_from(args)
        run = run_live(settings, workdir, ROOT / "scripts" / "prometheus.sh", lambda m: console.print(f"[dim]{m}[/]"))
        (workdir / "run.json").write_bytes(orjson.dumps(run.to_json(), option=orjson.OPT_SERIALIZE_NUMPY))
    live_wall = time.perf_counter() - t0
    if run.loadavg:  # the run's own samples (a --from-run analysis happens later, under another load)
        load_at_start = run.loadavg[0][1:]
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
    png = live_vs_sim_plot(
        live,
        simulated,
        RESULTS / ("autoscale_live" + (".quick" if args.quick else "") + ".png"),
        f"live (solid) vs simulated (dashed): {s.rate:g} req/s step for {s.duration_s:g} s; "
        f"{replay.autoscaler.describe()}\nsync {s.sync_period_s:g} s, scrape {s.scrape_interval_s:g} s, start-up "
        f"{s.startup_delay_s:g} s; engines {s.profile} x{s.time_scale:g} time, {s.max_num_seqs} seqs; "
        f"load average {facts_load(run)}",
    )
    loads = [x[1] for x in run.loadavg]
    bench_summary = run.bench["runs"][0]["summary"]
    lw = c["all_requests"]["live"]
    facts = {
        "requests_sent": bench_summary["requests"],
        "completed": bench_summary["completed"],
        "errors": bench_summary["errors"],
        "cancelled": bench_summary["cancelled"],
        "lost": lw.get("lost", 0),
        "gateway_logged_requests": run.gateway_requests,
        "startup_excess_s": live.extra["startup_excess_s"],
        "join_latency_s": live.extra["join_s"],
        "controller_passes": len(run.passes),
        "controller_pass_ms_p50": round(float(np.median([p["took_s"] for p in run.passes])) * 1000, 1),
        "controller_pass_ms_max": round(max(p["took_s"] for p in run.passes) * 1000, 1),
        "sync_phase_s": replay.settings.hpa_phase_s,
        "load_1min": {"min": min(loads), "mean": round(float(np.mean(loads)), 2), "max": max(loads)},
        "notes": run.notes,
    }
    cols = ["measure", "live", "simulated", "sim - live", "error", "within 25%"]
    rows = []
    for r in c["rows"]:
        diff = None if r["live"] is None or r["simulated"] is None else r["simulated"] - r["live"]
        unit = f" ({r['unit']})" if r["unit"] else ""
        err = None if r["error"] is None else f"{r['error'] * 100:+.1f}%"
        within = "–" if r["within"] is None else ("yes" if r["within"] else "NO")
        rows.append([r["measure"] + unit + (" *" if r["target"] else ""), r["live"], r["simulated"], diff, err, within])
    caption = (
        f"* = target measure; {c['targets_met']} of {c['targets']} targets within 25%. "
        f"Mean |desired live - desired simulated| = {c['replicas_mean_abs_diff']} replicas."
    )
    console.print(rich_table("live vs simulated (seconds from the breach unless noted)", cols, rows, caption))
    rep_cols = ["t s", "desired live", "Ready live", "desired sim", "Ready sim"]
    rep_rows = lc.replicas_table(live, simulated)
    console.print(rich_table("replicas over time", rep_cols, rep_rows))
    cmd = "inferline " + " ".join(a.replace(str(ROOT) + "/", "") for a in replay.argv)
    console.print(f"simulation: {cmd}\n  in process {sim_wall:.2f} s; the CLI agrees: {consistent}\nplot: {png}")
    data = {
        "benchmark": "autoscale_live",
        "date": datetime.fromtimestamp(run.t0_unix, UTC).isoformat(timespec="seconds"),
        "analysed": now_iso(),
        "commit": git_commit(),
        "kubernetes": K8S_VERSION,
        "machine": {**machine(), "loadavg_at_start": load_at_start},
        "settings": s.to_json(),
        "comparison": c,
        "replicas_over_time": {"columns": rep_cols, "rows": rep_rows},
        "live": {
            **facts,
            "passes": [p for p in run.passes if p["desired"] != p["current"]],
            "pods": run.pods,
            "gateway_events": run.gateway_events,
            "loadavg": run.loadavg,
            "wall": run.wall,
        },
        "simulated": {"summary": mine, "cli_summary_agrees": consistent, "wall_s": round(sim_wall, 3)},
        "simulate_command": cmd,
        "sides": {"live": lc.dump_side(live), "simulated": lc.dump_side(simulated)},
        "wall_s": {"live": round(live_wall, 1), "simulation": round(sim_wall, 2)},
        "plot": str(png.relative_to(ROOT)),
    }
    md = [
        "# autoscale_live: live scale-up vs `inferline autoscale simulate`",
        "",
        f"{data['date']} · commit {data['commit']} · {machine()['cpu_count']} cores · load average "
        f"(1 min) at start {load_at_start[0]}, during the run {facts['load_1min']['min']}-"
        f"{facts['load_1min']['max']} (mean {facts['load_1min']['mean']}) · Kubernetes {K8S_VERSION} HPA algorithm",
        "",
        f"Live: `inferline serve` + DNS discovery, `inferline sim` engines ({s.profile}, --time-scale "
        f"{s.time_scale:g}, max_num_seqs {s.max_num_seqs}) on 127.0.0.N, start-up delay {s.startup_delay_s:g} s, "
        f"real Prometheus scraping every {s.scrape_interval_s:g} s, live HPA every {s.sync_period_s:g} s: "
        f"{replay.autoscaler.describe()}. Load: `inferline bench` step 0 -> {s.rate:g} req/s for {s.duration_s:g} s "
        f"({s.input_len}-token prompts, {s.output_len}-token answers). Simulated: the bench's saved requests, "
        "same settings (command below).",
        "",
        "#### Live vs simulated (seconds from the breach unless noted)",
        "",
        md_table(cols, rows),
        "",
        caption,
        "",
        "#### Replicas over time (every 10 s from the first request)",
        "",
        md_table(rep_cols, rep_rows),
        "",
        "#### The live run",
        "",
        f"- requests: {facts['requests_sent']} sent, {facts['completed']} completed, errors "
        f"{facts['errors'] or 'none'}, cancelled {facts['cancelled']}, lost (neither completed nor 429/503) "
        f"{facts['lost']}",
        f"- pods Ready {facts['startup_excess_s']} s after the start-up delay on average (probe period "
        f"{s.probe_period_s:g} s); the gateway joined a Ready engine {facts['join_latency_s']} s after it entered "
        f"the DNS answer (re-resolve every {s.discovery_interval_s:g} s; the simulation assumes half of that)",
        f"- {facts['controller_passes']} controller passes, each {facts['controller_pass_ms_p50']} ms (max "
        f"{facts['controller_pass_ms_max']} ms) to query Prometheus and reconcile; the first pass "
        f"{facts['sync_phase_s']} s after the first request (the simulation's --sync-phase)",
        f"- wall: setup {run.wall.get('setup_s')} s, load + scale-down {run.wall.get('run_s')} s, teardown "
        f"{run.wall.get('teardown_s')} s; the simulation of it {sim_wall:.2f} s",
        "",
        "Simulated with (the in-process run and this command agree: " + ("yes" if consistent else "NO") + "):",
        "",
        "```",
        cmd,
        "```",
        "",
    ]
    if run.notes:
        md += ["Notes: " + "; ".join(run.notes), ""]
    j, m = write_results("autoscale_live", data, "\n".join(md), quick=args.quick)
    console.print(f"wrote {j}, {m}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
