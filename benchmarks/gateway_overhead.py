"""Gateway overhead: the same streaming load direct to a fast simulated engine and through three proxies.

    .venv/bin/python benchmarks/gateway_overhead.py [--quick] [--peers install|cached|skip]

One `inferline sim --profile instant` engine (zero model time: tokens as fast as its event loop sends
them) and, in front of it,

  (a) direct       - the load generator talks to the sim itself;
  (b) inferline    - `inferline serve`, one `kind: vllm` backend, default settings (least_loaded,
                     admission on, one JSON log line per request at level info);
  (c) litellm      - LiteLLM proxy (PyPI `litellm[proxy]`, own venv), 2 workers under gunicorn, the sim
                     as an `openai/` model with api_base, a master key (the proxy refuses to start
                     without one), default logging;
  (d) vllm-router  - vLLM's Rust router (PyPI `vllm-router`, own venv), `--worker-urls SIM`, default
                     policy (cache_aware).

Open-loop Poisson arrivals (inferline.bench, in this process), chat streaming, 64-token prompts,
32 output tokens (`ignore_eos`). Per fixed rate (10, 50, 200 req/s) every target runs back to back, in
a rotating order, `--rounds` times; latencies are pooled over the rounds. Added latency = the
target's percentile minus the direct path's percentile at the same rate. Then a short open-loop sweep
finds the highest rate each target sustains (< 1% errors and >= 90% of the offered rate completed).

Everything shares the machine's cores: the CPU use of every process over every run (from /proc, whole
process groups) is in the tables, so a reader can tell a slow proxy from a starved one.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

NAME = "gateway_overhead"
INPUT_LEN = 64
OUTPUT_LEN = 32
TARGET_P50_MS = 1.0  # the gateway issue's targets: added TTFT at 200 streaming req/s
TARGET_P99_MS = 5.0
TARGET_RATE = 200.0
TARGET_MAX_RATE_VS_ROUTER = 0.5
LITELLM_ARGS = ("--num_workers", "2", "--run_gunicorn")
SWEEP_ORDER = ("direct", "inferline", "vllm-router", "litellm")  # slowest last: the soft budget may cut it
SWEEP_RATES = "100,200,400,600,800,1000,1200,1600"
SWEEP_RATES_LITELLM = "10,25,50,100,200"  # it saturates two orders of magnitude lower here
SWEEP_STEP_S = 3.0
SWEEP_MAX_TTFT_P99_MS = 1000.0  # a step whose TTFT p99 passes 1 s is building a queue: not sustained


@dataclass
class Target:
    name: str
    url: str
    proc: h.Proc | None  # None: the direct path
    api_key: str | None = None
    note: str = ""
    fixed: dict[float, list[h.Measured]] = field(default_factory=dict)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    max_rate: float | None = None
    max_rate_note: str = ""


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (< 2 min): short runs, peers only if cached")
    ap.add_argument(
        "--peers",
        choices=("install", "cached", "skip"),
        default=None,
        help="install missing peers (default in full mode), use cached ones only (default with --quick), or none",
    )
    ap.add_argument("--rates", default=None, help="fixed rates, req/s (default 10,50,200)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds over the fixed rates (default 2; quick 1)")
    ap.add_argument(
        "--sweep",
        default=None,
        help=f"sweep rates, req/s (default {SWEEP_RATES}, LiteLLM {SWEEP_RATES_LITELLM}; quick 400)",
    )
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto", help="py-spy the gateway")
    ap.add_argument("--budget", type=float, default=None, help="hard wall-clock limit, s (default 720; quick 118)")
    return ap.parse_args()


def duration_for(rate: float, quick: bool) -> float:
    """Enough arrivals for a p99 at low rates, short at high ones."""
    if quick:
        return 3.0
    return max(6.0, min(15.0, 150.0 / rate))


def start_targets(procs: h.Stack, sim: h.Proc, peers_mode: str, data: dict[str, Any]) -> list[Target]:
    """Start every proxy; LiteLLM (slow to import) first and waited for last. A peer that cannot be
    installed or started is written down in data["failed"] and left out."""
    targets = [Target("direct", sim.url, None)]
    lite_proc: h.Proc | None = None
    key = "sk-" + secrets.token_hex(16)
    lite = h.peer_venv("litellm", "litellm[proxy]", "litellm", "litellm", peers_mode)
    data["peer_versions"]["litellm"] = lite.version
    if lite.ok and lite.bin is not None:
        cfg = procs.logdir / "litellm.yaml"
        cfg.write_text(
            "model_list:\n"
            "  - model_name: smollm2\n"
            "    litellm_params:\n"
            "      model: openai/smollm2\n"
            f"      api_base: {sim.url}/v1\n"
            "      api_key: none\n"
        )
        port = h.free_port()
        # uvicorn's own multi-worker supervisor kills workers that import slowly on a busy machine
        # ("Child process died" in a loop), so 2 workers run under gunicorn, as LiteLLM recommends.
        lite_proc = procs.start(
            "litellm",
            [str(lite.bin), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), *LITELLM_ARGS],
            env={"LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        )
        lite_proc.url = f"http://127.0.0.1:{port}"
    else:
        data["failed"]["litellm"] = lite.note

    gw = procs.gateway(
        "inferline",
        h.gateway_config([{"name": "sim0", "kind": "vllm", "url": sim.url, "max_num_seqs": 4096}]),
    )
    targets.append(Target("inferline", gw.url, gw))
    data["startup_s"] = {"sim": sim.started_s, "inferline": gw.started_s}

    if lite_proc is not None:
        try:
            h.console.print("waiting for LiteLLM (2 gunicorn workers; 15-40 s on a busy machine)")
            procs.wait_http(lite_proc, lite_proc.url + "/health/liveliness", 150)
            targets.append(Target("litellm", lite_proc.url, lite_proc, api_key=key, note="2 workers (gunicorn)"))
            data["startup_s"]["litellm"] = lite_proc.started_s
        except RuntimeError as exc:
            procs.stop(lite_proc)
            data["failed"]["litellm"] = f"did not start: {exc}"[:2000]

    router = h.peer_venv("vllm-router", "vllm-router", "vllm-router", "vllm-router", peers_mode)
    data["peer_versions"]["vllm-router"] = router.version
    if router.ok and router.bin is not None:
        port = h.free_port()
        metrics = ["--prometheus-port", str(h.free_port()), "--prometheus-host", "127.0.0.1"]  # default 29000
        p = procs.start(
            "vllm-router",
            [str(router.bin), "--worker-urls", sim.url, "--host", "127.0.0.1", "--port", str(port), *metrics],
        )
        p.url = f"http://127.0.0.1:{port}"
        try:
            procs.wait_http(p, p.url + "/health", 90)
            targets.append(Target("vllm-router", p.url, p, note="policy cache_aware (default)"))
            data["startup_s"]["vllm-router"] = p.started_s
        except RuntimeError as exc:
            procs.stop(p)
            data["failed"]["vllm-router"] = f"did not start: {exc}"[:2000]
    else:
        data["failed"]["vllm-router"] = router.note
    return targets


QUICK = False


def run_one(t: Target, sim: h.Proc, procs_all: list[h.Proc], rate: float, duration: float, **kw: Any) -> h.Measured:
    extra = {"api_key": t.api_key} if t.api_key else {}
    m = h.bench(
        t.url,
        procs_all,
        rates=(rate,),
        duration_s=duration,
        grace_s=kw.pop("grace_s", 3.0 if QUICK else 10.0),
        request_timeout_s=kw.pop("request_timeout_s", 10.0 if QUICK else 20.0),
        input={"mean": INPUT_LEN},
        output={"mean": OUTPUT_LEN},
        ignore_eos=True,
        seed=kw.pop("seed", 0),
        **extra,
        **kw,
    )
    h.settle(procs_all, max_s=5.0 if QUICK else 30.0)
    return m


def warm_up(t: Target, procs_all: list[h.Proc]) -> None:
    extra = {"api_key": t.api_key} if t.api_key else {}
    h.bench(
        t.url,
        procs_all,
        concurrency=(8,),
        num_requests=32,
        grace_s=20,
        request_timeout_s=20,
        input={"mean": INPUT_LEN},
        output={"mean": OUTPUT_LEN},
        ignore_eos=True,
        seed=99,
        **extra,
    )


def pooled(ms: list[h.Measured]) -> dict[str, Any]:
    from inferline.bench import summarize

    records = [r for m in ms for r in m.records]
    s = summarize(records)
    wall = sum(m.wall_s for m in ms)
    cpu_s: dict[str, float] = {}
    for m in ms:
        for k, v in m.cpu_s.items():
            cpu_s[k] = cpu_s.get(k, 0.0) + v
    s["cpu_ratio"] = {k: round(v / wall, 3) for k, v in cpu_s.items()}
    s["cpu_ms_per_request"] = {k: round(v / max(1, s["completed"]) * 1e3, 3) for k, v in cpu_s.items()}
    s["achieved_rps"] = round(sum(m.summary["request_throughput_rps"] or 0 for m in ms) / len(ms), 1)
    s["error_ratio"] = round(h.error_ratio(s), 4)
    s["loadavg_1m"] = [m.loadavg[0] if m.loadavg else None for m in ms]
    s["runs"] = len(ms)
    return s


def sweep_target(
    t: Target, sim: h.Proc, procs_all: list[h.Proc], rates: list[float], quick: bool, budget_ok: Any
) -> None:
    """Rates in turn until one is not sustained twice in a row (a failed step is tried once more: on a
    shared machine one 3-second step can fail because another job took the cores for a moment)."""
    best: float | None = None
    for rate in rates:
        if not budget_ok():
            t.max_rate_note = "sweep cut short by the time budget"
            break
        tries = 1 if quick else 2
        for attempt in range(tries):
            row = sweep_step(t, sim, procs_all, rate, attempt)
            t.sweep.append(row)
            if row["ok"] or not budget_ok():
                break
        if not row["ok"]:
            t.max_rate_note = (
                f"failed at {rate:g} req/s ({'twice' if row['attempt'] > 1 else 'once'}): "
                f"{row['achieved_rps']:.0f} req/s completed, {row['error_ratio']:.1%} errors, TTFT p99 "
                f"{h.fmt(row['ttft_p99_ms'])} ms; generator send lag p99 {h.fmt(row['send_lag_p99_ms'])} ms"
            )
            break
        best = rate
        if row["generator_limited"]:
            t.max_rate_note = f"load generator at its limit at {rate:g} req/s: the target may sustain more"
            break
    else:
        t.max_rate_note = f"passed every swept rate (>= {rates[-1]:g} req/s)"
    t.max_rate = best


def sweep_step(t: Target, sim: h.Proc, procs_all: list[h.Proc], rate: float, attempt: int) -> dict[str, Any]:
    m = run_one(t, sim, procs_all, rate, SWEEP_STEP_S, grace_s=3.0, request_timeout_s=10.0, seed=7 + attempt)
    s = m.summary
    err = h.error_ratio(s)
    achieved = s["request_throughput_rps"] or 0.0
    p99 = h.pct(s, "ttft_ms", "p99")
    ok = err < 0.01 and achieved >= 0.9 * rate and p99 is not None and p99 <= SWEEP_MAX_TTFT_P99_MS
    row = {
        "rate": rate,
        "attempt": attempt + 1,
        "ok": ok,
        "achieved_rps": round(achieved, 1),
        "error_ratio": round(err, 4),
        "errors": s["errors"],
        "ttft_p50_ms": h.pct(s, "ttft_ms", "p50"),
        "ttft_p99_ms": p99,
        "send_lag_p99_ms": (s.get("send_lag_ms") or {}).get("p99"),
        "cpu_ratio": m.cpu,
        "cpu_ms_per_request": {k: round(v / max(1, s["completed"]) * 1e3, 3) for k, v in m.cpu_s.items()},
        "loadavg_1m": m.loadavg[0] if m.loadavg else None,
        "generator_limited": m.cpu.get("loadgen", 0) > 0.9,
    }
    h.console.print(
        f"  sweep {t.name:12s} {rate:6.0f} req/s (try {attempt + 1}): {'ok  ' if ok else 'FAIL'} achieved "
        f"{achieved:7.1f}/s errors {err:.1%} TTFT p50 {h.fmt(row['ttft_p50_ms'])} ms p99 {h.fmt(p99)} ms CPU {m.cpu}"
    )
    return row


def profile_gateway(gw: Target, sim: h.Proc, procs_all: list[h.Proc], data: dict[str, Any]) -> None:
    """py-spy the gateway for 10 s under 200 req/s: a flame graph (if small) and a text summary."""
    spy = h.VENV_BIN / "py-spy"
    if not spy.exists():
        data["profile"] = {"note": f"py-spy not found at {spy}"}
        return
    assert gw.proc is not None
    raw = gw.proc.log.parent / "profile.raw"
    svg = h.RESULTS / "profile_gateway.svg"
    out: dict[str, Any] = {"rate": TARGET_RATE, "seconds": 10}
    pid = ["--pid", str(gw.proc.pid)]
    for fmt, path in (("raw", raw), ("flamegraph", svg)):
        p = subprocess.Popen(
            [str(spy), "record", "--nonblocking", "-r", "250", "-d", "10", "-f", fmt, "-o", str(path), *pid],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        run_one(gw, sim, procs_all, TARGET_RATE, 10.5, seed=11)
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        if p.returncode != 0:
            out[f"{fmt}_error"] = err.decode(errors="replace")[-500:]
    if svg.exists():
        size = svg.stat().st_size
        out["svg_bytes"] = size
        if size >= 1 << 20:
            svg.unlink()
            out["svg"] = "not kept (>= 1 MB); see the text summary"
        else:
            out["svg"] = "benchmarks/results/profile_gateway.svg"
    if raw.exists():
        out.update(summarize_profile(raw.read_text()))
        (h.RESULTS / "profile_gateway.txt").write_text(profile_text(out))
    data["profile"] = out


_ENTRY = re.compile(r"inferline/(cli\.py|gateway/server\.py)")  # the process's entry frames: always 100%


def summarize_profile(text: str, top: int = 25) -> dict[str, Any]:
    """Collapsed stacks -> self and inclusive sample shares per frame, for the project's own frames
    and for everything."""
    incl: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, n_s = line.rpartition(" ")
        if not stack or not n_s.isdigit():
            continue
        n = int(n_s)
        total += n
        frames = stack.split(";")
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def share(d: dict[str, int], only_ours: bool = False) -> list[list[Any]]:
        items = [(k, v) for k, v in d.items() if not only_ours or ("inferline/" in k and not _ENTRY.search(k))]
        items.sort(key=lambda kv: -kv[1])
        return [[k, round(100 * v / total, 1)] for k, v in items[:top]]

    return {
        "samples": total,
        "self_top": share(own),
        "inclusive_top_inferline": share(incl, only_ours=True),
    }


def profile_text(p: dict[str, Any]) -> str:
    lines = [f"py-spy of the inferline gateway, {p['seconds']} s at {p['rate']:g} req/s, {p.get('samples')} samples"]
    lines.append("")
    lines.append("self time (% of samples, where the CPU was when sampled):")
    lines += [f"  {v:5.1f}%  {k}" for k, v in p.get("self_top", [])]
    lines.append("")
    lines.append("inclusive time of inferline's own frames:")
    lines += [f"  {v:5.1f}%  {k}" for k, v in p.get("inclusive_top_inferline", [])]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse_args()
    global QUICK
    quick = QUICK = args.quick
    peers_mode = args.peers or ("cached" if quick else "install")
    rates = [float(x) for x in (args.rates or "10,50,200").split(",")]
    if quick and args.rates is None:
        rates = [10.0, 200.0]
    rounds = args.rounds or (1 if quick else 2)
    sweep_rates = [float(x) for x in (args.sweep or ("400" if quick else SWEEP_RATES)).split(",")]
    sweep_litellm = [float(x) for x in (args.sweep or ("50" if quick else SWEEP_RATES_LITELLM)).split(",")]
    budget = args.budget or (118.0 if quick else 720.0)  # hard stop (nothing written); the soft one is below
    soft_s = 80.0 if quick else 480.0  # no new sweep step after this
    procs = h.Stack(budget)
    data: dict[str, Any] = {
        "benchmark": NAME,
        "date": h.now_iso(),
        "mode": "quick" if quick else "full",
        "machine": h.machine(),
        "peer_versions": {},
        "failed": {},
        "workload": {
            "engine": "inferline sim --profile instant (zero model time), max_num_seqs 4096",
            "requests": f"chat, stream, prompt ~{INPUT_LEN} tokens, {OUTPUT_LEN} output tokens (ignore_eos), "
            "stream_options.include_usage",
            "arrivals": "open loop, Poisson",
            "rates": rates,
            "rounds": rounds,
            "sweep_rates": sweep_rates,
            "sweep_rates_litellm": sweep_litellm,
            "sustained": "< 1% errors (incl. cancelled), completed req/s >= 90% of the offered rate and TTFT p99 "
            "<= 1 s; a failed step is tried once more",
        },
    }
    t_start = time.monotonic()
    sim = procs.sim(max_num_seqs=4096)[0]
    targets = start_targets(procs, sim, peers_mode, data)
    procs_all = [sim] + [t.proc for t in targets if t.proc is not None]
    for name, why in data["failed"].items():
        h.console.print(f"[yellow]{name}: not measured: {why}[/]")

    # idle CPU of everything (background polling, health checks)
    before = {p.name: p.cpu_s() for p in procs_all}
    time.sleep(3.0)
    data["idle_cpu_ratio"] = {p.name: round((p.cpu_s() - before[p.name]) / 3.0, 3) for p in procs_all}

    for t in targets:
        warm_up(t, procs_all)
    h.settle(procs_all)

    # fixed rates, rotating order
    for rnd in range(rounds):
        for i, rate in enumerate(rates):
            k = (rnd + i) % len(targets)
            order = targets[k:] + targets[:k]
            for t in order:
                m = run_one(t, sim, procs_all, rate, duration_for(rate, quick), seed=rnd)
                t.fixed.setdefault(rate, []).append(m)
                s = m.summary
                h.console.print(
                    f"round {rnd + 1} {rate:5.0f} req/s {t.name:12s} ok {s['completed']:5d} err {s['errors']} "
                    f"TTFT p50 {h.fmt(h.pct(s, 'ttft_ms', 'p50'))} p99 {h.fmt(h.pct(s, 'ttft_ms', 'p99'))} ms  "
                    f"E2E p50 {h.fmt(h.pct(s, 'e2e_ms', 'p50'))} p99 {h.fmt(h.pct(s, 'e2e_ms', 'p99'))} ms  "
                    f"CPU {m.cpu}  load {m.loadavg[:1]}"
                )

    # sweep for the highest sustained rate
    def budget_ok() -> bool:
        return time.monotonic() - t_start < soft_s

    for t in sorted(targets, key=lambda t: SWEEP_ORDER.index(t.name)):
        sweep_target(t, sim, procs_all, sweep_litellm if t.name == "litellm" else sweep_rates, quick, budget_ok)

    results = build_results(targets, rates, data)
    gw = next((t for t in targets if t.name == "inferline"), None)
    missed = results["verdict"].get("missed", [])
    if gw is not None and (args.profile == "always" or (args.profile == "auto" and missed and not quick)):
        if procs.remaining_s() > 60:
            h.console.print("profiling the gateway with py-spy (10 s at 200 req/s, twice: raw + flame graph)")
            profile_gateway(gw, sim, procs_all, data)
        else:
            data["profile"] = {"note": "skipped: not enough time left in the budget"}
    data["results"] = results
    data["wall_s"] = round(time.monotonic() - t_start, 1)
    data["machine"]["loadavg_at_end"] = h.loadavg()
    procs.stop_all()
    md = render(data, targets, rates)
    j, mpath = h.write_results(NAME, data, md, quick=quick)
    h.console.print(f"wrote {j.relative_to(h.REPO)} and {mpath.relative_to(h.REPO)} in {data['wall_s']} s")
    return 0


def build_results(targets: list[Target], rates: list[float], data: dict[str, Any]) -> dict[str, Any]:
    direct = targets[0]
    out: dict[str, Any] = {"fixed": {}, "max_rate": {}, "verdict": {}}
    for rate in rates:
        d = pooled(direct.fixed[rate])
        row: dict[str, Any] = {}
        for t in targets:
            s = d if t is direct else pooled(t.fixed[rate])
            entry = {
                "completed": s["completed"],
                "errors": s["errors"],
                "error_ratio": s["error_ratio"],
                "achieved_rps": s["achieved_rps"],
                "ttft_ms": {q: h.pct(s, "ttft_ms", q) for q in ("p50", "p90", "p99", "mean")},
                "e2e_ms": {q: h.pct(s, "e2e_ms", q) for q in ("p50", "p90", "p99", "mean")},
                "cpu_ratio": s["cpu_ratio"],
                "cpu_ms_per_request": s["cpu_ms_per_request"],
                "loadavg_1m": s["loadavg_1m"],
                "runs": s["runs"],
            }
            if t is not direct:
                entry["added_ms"] = {
                    f"{m}_{q}": _sub(h.pct(s, f"{m}_ms", q), h.pct(d, f"{m}_ms", q))
                    for m in ("ttft", "e2e")
                    for q in ("p50", "p99")
                }
            row[t.name] = entry
        out["fixed"][f"{rate:g}"] = row
    direct_max = direct.max_rate
    for t in targets:
        entry = {"max_rate_rps": t.max_rate, "note": t.max_rate_note, "sweep": t.sweep}
        if t is not direct and t.max_rate is not None and direct_max is not None and t.max_rate >= direct_max:
            entry["note"] += "; the direct path stopped at the same rate: bounded by the rig, not the proxy"
        # CPU-normalised capacity: 1 / (proxy CPU per request), at the highest fixed rate it served cleanly
        if t is not direct:
            clean = [r for r in rates if out["fixed"][f"{r:g}"][t.name]["error_ratio"] < 0.01]
            if clean:
                r = max(clean)
                ms = out["fixed"][f"{r:g}"][t.name]["cpu_ms_per_request"].get(t.name)
                entry["cpu_ms_per_request"] = ms
                entry["cpu_ms_per_request_at_rps"] = r
                entry["requests_per_core_s"] = round(1000 / ms) if ms else None
        out["max_rate"][t.name] = entry
    gw = out["fixed"].get(f"{TARGET_RATE:g}", {}).get("inferline")
    missed: list[str] = []
    v: dict[str, Any] = {}
    if gw is not None:
        p50, p99 = gw["added_ms"]["ttft_p50"], gw["added_ms"]["ttft_p99"]
        v["added_ttft_p50_ms"], v["added_ttft_p99_ms"] = p50, p99
        if p50 is None or p50 > TARGET_P50_MS:
            missed.append(f"added TTFT p50 at {TARGET_RATE:g} req/s = {h.fmt(p50)} ms (target <= {TARGET_P50_MS} ms)")
        if p99 is None or p99 > TARGET_P99_MS:
            missed.append(f"added TTFT p99 at {TARGET_RATE:g} req/s = {h.fmt(p99)} ms (target <= {TARGET_P99_MS} ms)")
    gmax = out["max_rate"].get("inferline", {}).get("max_rate_rps")
    rmax = out["max_rate"].get("vllm-router", {}).get("max_rate_rps")
    if gmax is not None and rmax:
        v["max_rate_vs_router"] = round(gmax / rmax, 2)
        if gmax < TARGET_MAX_RATE_VS_ROUTER * rmax:
            missed.append(f"max sustained rate {gmax:g} req/s < half of vllm-router's {rmax:g} req/s")
    gcore = out["max_rate"].get("inferline", {}).get("requests_per_core_s")
    rcore = out["max_rate"].get("vllm-router", {}).get("requests_per_core_s")
    if gcore and rcore:
        v["per_core_capacity_vs_router"] = round(gcore / rcore, 2)
    v["missed"] = missed
    v["met"] = not missed
    out["verdict"] = v
    return out


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def render(data: dict[str, Any], targets: list[Target], rates: list[float]) -> str:
    res = data["results"]
    cols = [
        "rate req/s",
        "path",
        "TTFT p50",
        "TTFT p99",
        "E2E p50",
        "E2E p99",
        "+TTFT p50",
        "+TTFT p99",
        "+E2E p50",
        "+E2E p99",
        "errors",
        "proxy CPU",
        "proxy CPU ms/req",
        "sim CPU",
        "loadgen CPU",
    ]
    rows = []
    for rate in rates:
        for t in targets:
            e = res["fixed"][f"{rate:g}"][t.name]
            a = e.get("added_ms", {})
            cpu = e["cpu_ratio"]
            rows.append(
                [
                    f"{rate:g}",
                    t.name,
                    e["ttft_ms"]["p50"],
                    e["ttft_ms"]["p99"],
                    e["e2e_ms"]["p50"],
                    e["e2e_ms"]["p99"],
                    a.get("ttft_p50"),
                    a.get("ttft_p99"),
                    a.get("e2e_p50"),
                    a.get("e2e_p99"),
                    f"{e['error_ratio']:.1%}",
                    f"{cpu.get(t.name, 0):.0%}" if t.proc else "–",
                    e["cpu_ms_per_request"].get(t.name) if t.proc else None,
                    f"{cpu.get('sim', 0):.0%}",
                    f"{cpu.get('loadgen', 0):.0%}",
                ]
            )
    caption = (
        "ms; '+' = added vs the direct path at the same rate (difference of percentiles); CPU = CPU seconds / wall "
        "seconds of the whole process group (1.0 = one core; this machine has "
        f"{data['machine']['cores']})"
    )
    h.console.print(h.rich_table("streaming latency: direct vs through each proxy", cols, rows, caption))
    mcols = ["path", "max sustained req/s", "vs vllm-router", "vs direct", "proxy CPU ms/req", "req/s per core", "note"]
    mrows = []
    router_max = res["max_rate"].get("vllm-router", {}).get("max_rate_rps")
    direct_max = res["max_rate"]["direct"]["max_rate_rps"]
    for t in targets:
        mr = res["max_rate"][t.name]["max_rate_rps"]
        mrows.append(
            [
                t.name,
                mr,
                (f"{mr / router_max:.2f}" if mr is not None and router_max else None),
                (f"{mr / direct_max:.2f}" if mr is not None and direct_max else None),
                res["max_rate"][t.name].get("cpu_ms_per_request"),
                res["max_rate"][t.name].get("requests_per_core_s"),
                res["max_rate"][t.name]["note"],
            ]
        )
    h.console.print(
        h.rich_table("highest sustained rate (< 1% errors, >= 90% completed, TTFT p99 <= 1 s)", mcols, mrows)
    )
    v = res["verdict"]
    md = h.header("Gateway overhead: direct vs inferline vs LiteLLM vs vllm-router", data)
    md += (
        f"Engine: `inferline sim --profile instant`; load: {data['workload']['requests']}; "
        f"{data['workload']['arrivals']}; {data['workload']['rounds']} round(s) per rate, pooled. "
        "Generator, sim and proxies share the machine's cores.\n\n"
    )
    md += "## Added latency (ms)\n\n" + h.md_table(cols, rows) + "\n" + caption + ".\n\n"
    md += "## Highest sustained rate\n\n" + h.md_table(mcols, mrows) + "\n"
    md += (
        f"Sweep rates {data['workload']['sweep_rates']} req/s (LiteLLM {data['workload']['sweep_rates_litellm']}), "
        f"3 s each, {data['workload']['sustained']}. 'proxy CPU ms/req' is at the highest fixed rate served with "
        "< 1% errors; 'req/s per core' = 1000 / it.\n\n"
    )
    idle = data.get("idle_cpu_ratio", {})
    md += "Idle CPU (3 s, no load): " + ", ".join(f"{k} {v:.1%}" for k, v in idle.items()) + ".\n\n"
    md += "## Targets (gateway issue)\n\n"
    md += (
        f"- added TTFT at {TARGET_RATE:g} streaming req/s: p50 {h.fmt(v.get('added_ttft_p50_ms'))} ms "
        f"(target <= {TARGET_P50_MS:g}), p99 {h.fmt(v.get('added_ttft_p99_ms'))} ms (target <= {TARGET_P99_MS:g})\n"
    )
    md += f"- max sustained rate vs vllm-router: {h.fmt(v.get('max_rate_vs_router'))} (target >= 0.5)\n"
    md += (
        f"- requests per CPU-second vs vllm-router (1 / proxy CPU per request, a capacity that does not depend "
        f"on who else uses the cores): {h.fmt(v.get('per_core_capacity_vs_router'))}\n"
    )
    md += f"- verdict: {'met' if v.get('met') else 'MISSED: ' + '; '.join(v.get('missed', []))}\n\n"
    if data["failed"]:
        md += "## Not measured\n\n" + "".join(f"- {k}: {w}\n" for k, w in data["failed"].items()) + "\n"
    prof = data.get("profile")
    if prof:
        md += "## Gateway profile (py-spy)\n\n"
        if "self_top" in prof:
            md += f"{prof['seconds']} s at {prof['rate']:g} req/s, {prof['samples']} samples"
            md += f"; flame graph: {prof.get('svg', '–')}; text: benchmarks/results/profile_gateway.txt\n\n"
            md += "Self time (top 12):\n\n" + h.md_table(["%", "frame"], [[v2, k] for k, v2 in prof["self_top"][:12]])
            md += "\nInclusive time of inferline's frames (top 15):\n\n"
            md += h.md_table(["%", "frame"], [[v2, k] for k, v2 in prof["inclusive_top_inferline"][:15]])
        else:
            md += prof.get("note", "") + "\n"
    return md


if __name__ == "__main__":
    h.main_guard(main)
