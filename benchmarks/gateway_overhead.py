"""Gateway overhead: the issue's table in one run: direct vs inferline (1 and 2 workers) vs vllm-router.

    .venv/bin/python benchmarks/gateway_overhead.py [--quick] [--peers install|cached|skip] [--litellm]

One `inferline sim --profile instant` engine (zero model time; 16 content chunks per request, plus the
role, finish and usage chunks and [DONE]) and, in front of it,

  direct        - the load goes to the sim itself;
  inferline     - `inferline serve`, one `kind: vllm` backend, default settings (least_loaded, admission,
                  one JSON log line per request at level info), one process; its hot path compiled
                  (`make compile`, src/inferline/hot_path.py);
  inferline pure - the same code with INFERLINE_PURE_PYTHON=1: the hot path as pure Python;
  inferline x2  - the same with `--workers 2` (SO_REUSEPORT);
  vllm-router   - vLLM's Rust router (PyPI `vllm-router`, own venv), `--policy round_robin`;
  litellm       - only with --litellm: LiteLLM proxy (PyPI `litellm[proxy]`), 2 workers under gunicorn.

Two measurements, paths alternating run by run:

1. Saturation (closed loop, `_firehose.py`: C keep-alive connections each streaming request after
   request, ~50 µs of generator CPU per request, so the proxy saturates before the generator): completed
   streams per second over the window, and every process's CPU per request from /proc (CPU seconds of its
   process group / requests completed). CPU per request is the figure that does not depend on who else
   uses the cores: 1000 / it is what one free core sustains.
2. Latency (open loop, Poisson, `inferline.bench`): TTFT p50/p99 at 10, 200 and 500 req/s; added =
   the path's percentile minus the direct path's at the same rate, pooled over `--rounds`.

Everything shares the machine's cores (and, on the development machines, other people's jobs: the
load average is recorded per run). On 2 cores, 2 workers cannot each have a free core while the
generator and the sim also run, so the 1-vs-2-worker table reports both the measured saturation and
the capacity the CPU per request implies (workers x 1000 / CPU ms per request).
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
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
OUTPUT_LEN = 16  # content chunks per request
RATES = (10.0, 200.0, 500.0)
TARGETS = {  # the gateway issue's
    "saturation_vs_router": 1.0,
    "cpu_ms_per_request": 0.30,
    "added_ttft_p50_ms_200": 0.6,
    "added_ttft_p99_ms_200": 1.5,
    "workers_scaling": 1.8,
}
LITELLM_ARGS = ("--num_workers", "2", "--run_gunicorn")


@dataclass
class Target:
    name: str
    url: str
    proc: h.Proc | None  # None: the direct path
    api_key: str | None = None
    workers: int = 1
    note: str = ""
    fixed: dict[float, list[h.Measured]] = field(default_factory=dict)
    sat: list[dict[str, Any]] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (~2 min): short windows, one round, no profile")
    ap.add_argument(
        "--peers",
        choices=("install", "cached", "skip"),
        default=None,
        help="install vllm-router (and LiteLLM with --litellm) when missing (default), use cached ones only "
        "(default with --quick), or none",
    )
    ap.add_argument("--litellm", action="store_true", help="also measure LiteLLM (installs ~2 min once; slow)")
    ap.add_argument("--rates", default=None, help="open-loop rates for TTFT, req/s (default 10,200,500)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of every measurement (default 2; quick 1)")
    ap.add_argument("--concurrency", type=int, default=64, help="streams kept open by the saturation run (64)")
    ap.add_argument("--window", type=float, default=None, help="seconds per saturation run (default 6; quick 3)")
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto", help="py-spy the gateway")
    ap.add_argument("--budget", type=float, default=None, help="hard wall-clock limit, s (default 900; quick 170)")
    return ap.parse_args()


def duration_for(rate: float, quick: bool) -> float:
    """Enough arrivals for a p99 at low rates, short at high ones."""
    if quick:
        return 6.0 if rate < 50 else 3.0
    return max(6.0, min(15.0, 300.0 / rate))


# --------------------------------------------------------------------------------------------
# start-up


def start_targets(stack: h.Stack, sim: h.Proc, args: argparse.Namespace, data: dict[str, Any]) -> list[Target]:
    peers_mode = args.peers or ("cached" if args.quick else "install")
    targets = [Target("direct", sim.url, None)]
    lite_proc: h.Proc | None = None
    key = "sk-" + secrets.token_hex(16)
    if args.litellm:
        lite = h.peer_venv("litellm", "litellm[proxy]", "litellm", "litellm", peers_mode)
        data["peer_versions"]["litellm"] = lite.version
        if lite.ok and lite.bin is not None:
            cfg = stack.logdir / "litellm.yaml"
            cfg.write_text(
                "model_list:\n  - model_name: smollm2\n    litellm_params:\n      model: openai/smollm2\n"
                f"      api_base: {sim.url}/v1\n      api_key: none\n"
            )
            port = h.free_port()
            # uvicorn's own multi-worker supervisor kills workers that import slowly on a busy machine,
            # so 2 workers run under gunicorn, as LiteLLM recommends.
            lite_proc = stack.start(
                "litellm",
                [str(lite.bin), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), *LITELLM_ARGS],
                env={"LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
            )
            lite_proc.url = f"http://127.0.0.1:{port}"
        else:
            data["failed"]["litellm"] = lite.note

    backends = [{"name": "sim0", "kind": "vllm", "url": sim.url, "max_num_seqs": 4096}]
    gw = stack.gateway("inferline", h.gateway_config(backends))
    targets.append(Target("inferline", gw.url, gw))
    pure = stack.gateway("inferline pure", h.gateway_config(backends), env={"INFERLINE_PURE_PYTHON": "1"})
    targets.append(Target("inferline pure", pure.url, pure, note="INFERLINE_PURE_PYTHON=1"))
    gw2 = stack.gateway("inferline x2", h.gateway_config(backends), args=("--workers", "2"))
    targets.append(Target("inferline x2", gw2.url, gw2, workers=2, note="--workers 2"))
    data["startup_s"] = {"sim": sim.started_s, "inferline": gw.started_s, "inferline x2": gw2.started_s}
    # What each gateway runs, from its own start-up line: the compiled hot path or pure Python (and why).
    data["hot_path"] = {p.name: _hot_path_logged(p) for p in (gw, pure, gw2)}
    if data["hot_path"]["inferline"] != "compiled":
        h.console.print(f"[yellow]inferline runs its hot path as {data['hot_path']['inferline']}: `make compile`[/]")

    router = h.peer_venv("vllm-router", "vllm-router", "vllm-router", "vllm-router", peers_mode)
    data["peer_versions"]["vllm-router"] = router.version
    if router.ok and router.bin is not None:
        port = h.free_port()
        metrics = ["--prometheus-port", str(h.free_port()), "--prometheus-host", "127.0.0.1"]  # default 29000
        argv = [str(router.bin), "--worker-urls", sim.url, "--host", "127.0.0.1", "--port", str(port)]
        p = stack.start("vllm-router", [*argv, "--policy", "round_robin", *metrics])
        p.url = f"http://127.0.0.1:{port}"
        try:
            stack.wait_http(p, p.url + "/health", 90)
            targets.append(Target("vllm-router", p.url, p, note="--policy round_robin"))
            data["startup_s"]["vllm-router"] = p.started_s
        except RuntimeError as exc:
            stack.stop(p)
            data["failed"]["vllm-router"] = f"did not start: {exc}"[:2000]
    else:
        data["failed"]["vllm-router"] = router.note

    if lite_proc is not None:
        try:
            h.console.print("waiting for LiteLLM (2 gunicorn workers; 15-40 s on a busy machine)")
            stack.wait_http(lite_proc, lite_proc.url + "/health/liveliness", 150)
            targets.append(Target("litellm", lite_proc.url, lite_proc, api_key=key, note="2 workers (gunicorn)"))
            data["startup_s"]["litellm"] = lite_proc.started_s
        except RuntimeError as exc:
            stack.stop(lite_proc)
            data["failed"]["litellm"] = f"did not start: {exc}"[:2000]
    return targets


def _hot_path_logged(p: h.Proc, wait_s: float = 5.0) -> str:
    # A worker may answer /ready before its start-up line is out: log lines are written in batches.
    deadline = time.monotonic() + wait_s
    while True:
        found = re.search(r"hot path: (.*)\)$", p.log.read_text(errors="replace"), re.MULTILINE)
        if found or time.monotonic() > deadline:
            return found.group(1) if found else "unknown (no start-up line)"
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# runs


QUICK = False


def run_fixed(t: Target, procs: list[h.Proc], rate: float, duration: float, seed: int) -> h.Measured:
    extra = {"api_key": t.api_key} if t.api_key else {}
    m = h.bench(
        t.url,
        procs,
        rates=(rate,),
        duration_s=duration,
        grace_s=3.0 if QUICK else 10.0,
        request_timeout_s=10.0 if QUICK else 20.0,
        input={"mean": INPUT_LEN},
        output={"mean": OUTPUT_LEN},
        ignore_eos=True,
        seed=seed,
        **extra,
    )
    h.settle(procs, max_s=5.0 if QUICK else 20.0)
    return m


def run_saturation(t: Target, procs: list[h.Proc], concurrency: int, window: float) -> dict[str, Any]:
    conc = min(concurrency, 8) if t.name == "litellm" else concurrency
    out = h.saturate(
        t.url,
        procs,
        concurrency=conc,
        duration_s=window,
        warmup_s=1.0,
        prompt_words=INPUT_LEN * 3 // 4,
        tokens=OUTPUT_LEN,
        api_key=t.api_key,
    )
    h.settle(procs, max_s=5.0 if QUICK else 20.0)
    return out


def warm_up(t: Target, procs: list[h.Proc]) -> None:
    extra = {"api_key": t.api_key} if t.api_key else {}
    h.bench(
        t.url,
        procs,
        concurrency=(8,),
        num_requests=64,
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

    s = summarize([r for m in ms for r in m.records])
    cpu_s: dict[str, float] = {}
    for m in ms:
        for k, v in m.cpu_s.items():
            cpu_s[k] = cpu_s.get(k, 0.0) + v
    s["cpu_ms_per_request"] = {k: round(v / max(1, s["completed"]) * 1e3, 3) for k, v in cpu_s.items()}
    s["error_ratio"] = round(h.error_ratio(s), 4)
    s["loadavg_1m"] = [m.loadavg[0] if m.loadavg else None for m in ms]
    return s


# --------------------------------------------------------------------------------------------
# main


def main() -> int:
    args = parse_args()
    global QUICK
    quick = QUICK = args.quick
    rates = [float(x) for x in args.rates.split(",")] if args.rates else list(RATES)
    rounds = args.rounds or (1 if quick else 2)
    window = args.window or (3.0 if quick else 6.0)
    stack = h.Stack(args.budget or (170.0 if quick else 900.0))
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
            "saturation": f"closed loop, {args.concurrency} keep-alive streams (_firehose.py), {window:g} s windows",
            "latency": "open loop, Poisson (inferline.bench)",
            "rates": rates,
            "rounds": rounds,
        },
    }
    t0 = time.monotonic()
    sim = stack.sim(max_num_seqs=4096)[0]
    targets = start_targets(stack, sim, args, data)
    procs = [sim] + [t.proc for t in targets if t.proc is not None]
    for name, why in data["failed"].items():
        h.console.print(f"[yellow]{name}: not measured: {why}[/]")
    before = {p.name: p.cpu_s() for p in procs}
    time.sleep(2.0)
    data["idle_cpu_ratio"] = {p.name: round((p.cpu_s() - before[p.name]) / 2.0, 3) for p in procs}
    for t in targets:
        warm_up(t, procs)
    h.settle(procs)

    for rnd in range(rounds):
        order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
        for t in order:
            r = run_saturation(t, procs, args.concurrency, window)
            t.sat.append(r)
            cpu = r["cpu_ms_per_request"]
            h.console.print(
                f"saturation round {rnd + 1} {t.name:13s} {r['rps']:8,.0f} req/s  errors {r['errors']}  "
                f"CPU ms/req {t.name if t.proc else 'sim'} {cpu.get(t.name if t.proc else 'sim')}  "
                f"TTFT p50 {h.fmt(r['ttft_ms']['p50'])} ms  load {r['loadavg'][:1]}"
            )
        for i, rate in enumerate(rates):
            k = (rnd + i) % len(targets)
            for t in targets[k:] + targets[:k]:
                if t.name == "litellm" and rate > 50:
                    continue  # it saturates below this here (measured: ~25-70 req/s)
                m = run_fixed(t, procs, rate, duration_for(rate, quick), seed=rnd * 10 + i)
                t.fixed.setdefault(rate, []).append(m)
                s = m.summary
                h.console.print(
                    f"latency    round {rnd + 1} {rate:5.0f} req/s {t.name:13s} ok {s['completed']:5d} "
                    f"err {s['errors']} TTFT p50 {h.fmt(h.pct(s, 'ttft_ms', 'p50'))} "
                    f"p99 {h.fmt(h.pct(s, 'ttft_ms', 'p99'))} ms  load {m.loadavg[:1]}"
                )

    results = build_results(targets, rates)
    data["results"] = results
    gw = next((t for t in targets if t.name == "inferline"), None)
    if gw is not None and (args.profile == "always" or (args.profile == "auto" and not quick)):
        if stack.remaining_s() > 60:
            h.console.print("profiling the gateway with py-spy (10 s at 500 req/s)")
            profile_gateway(gw, procs, data)
        else:
            data["profile"] = {"note": "skipped: not enough time left in the budget"}
    data["wall_s"] = round(time.monotonic() - t0, 1)
    data["machine"]["loadavg_at_end"] = h.loadavg()
    stack.stop_all()
    md = render(data, targets, rates)
    j, mpath = h.write_results(NAME, data, md, quick=quick)
    h.console.print(f"wrote {j.relative_to(h.REPO)} and {mpath.relative_to(h.REPO)} in {data['wall_s']} s")
    return 0


def _median(xs: list[float | None]) -> float | None:
    ys = [x for x in xs if x is not None]
    return round(statistics.median(ys), 3) if ys else None


def build_results(targets: list[Target], rates: list[float]) -> dict[str, Any]:
    direct = targets[0]
    out: dict[str, Any] = {"saturation": {}, "latency": {}, "verdict": {}}
    for t in targets:
        own = t.name if t.proc else "sim"
        out["saturation"][t.name] = {
            "rps": _median([r["rps"] for r in t.sat]),
            "rps_runs": [r["rps"] for r in t.sat],
            "cpu_ms_per_request": _median([r["cpu_ms_per_request"].get(own) for r in t.sat]),
            "sim_cpu_ms_per_request": _median([r["cpu_ms_per_request"].get("sim") for r in t.sat]),
            "loadgen_cpu_ms_per_request": _median([r["cpu_ms_per_request"].get("loadgen") for r in t.sat]),
            "cpu_cores": _median([r["cpu_ratio"].get(own) for r in t.sat]),
            "errors": [r["errors"] for r in t.sat],
            "ttft_ms_p50": _median([r["ttft_ms"]["p50"] for r in t.sat]),
            "loadavg_1m": [r["loadavg"][0] if r["loadavg"] else None for r in t.sat],
            "workers": t.workers,
            "note": t.note,
        }
    for rate in rates:
        d = pooled(direct.fixed[rate])
        row: dict[str, Any] = {}
        for t in targets:
            if rate not in t.fixed:
                continue
            s = d if t is direct else pooled(t.fixed[rate])
            entry = {
                "completed": s["completed"],
                "error_ratio": s["error_ratio"],
                "ttft_ms": {q: h.pct(s, "ttft_ms", q) for q in ("p50", "p90", "p99", "mean")},
                "e2e_ms": {q: h.pct(s, "e2e_ms", q) for q in ("p50", "p99")},
                "cpu_ms_per_request": s["cpu_ms_per_request"],
                "loadavg_1m": s["loadavg_1m"],
            }
            if t is not direct:
                entry["added_ttft_ms"] = {
                    q: _sub(h.pct(s, "ttft_ms", q), h.pct(d, "ttft_ms", q)) for q in ("p50", "p99")
                }
            row[t.name] = entry
        out["latency"][f"{rate:g}"] = row
    sat = out["saturation"]
    v: dict[str, Any] = {}
    g, r, g2 = sat.get("inferline", {}), sat.get("vllm-router", {}), sat.get("inferline x2", {})
    if g.get("rps") and r.get("rps"):
        v["saturation_vs_router"] = round(g["rps"] / r["rps"], 2)
    if g.get("cpu_ms_per_request") and r.get("cpu_ms_per_request"):
        v["cpu_per_request_vs_router"] = round(g["cpu_ms_per_request"] / r["cpu_ms_per_request"], 2)
    v["cpu_ms_per_request"] = g.get("cpu_ms_per_request")
    lat200 = out["latency"].get("200", {}).get("inferline", {}).get("added_ttft_ms", {})
    v["added_ttft_p50_ms_200"], v["added_ttft_p99_ms_200"] = lat200.get("p50"), lat200.get("p99")
    if g.get("rps") and g2.get("rps"):
        v["workers_scaling_measured"] = round(g2["rps"] / g["rps"], 2)
    if g.get("cpu_ms_per_request") and g2.get("cpu_ms_per_request"):
        # what two free cores would sustain vs one: 2 x (1 / CPU per request with 2 workers) / (1 / with 1)
        v["workers_scaling_from_cpu"] = round(2 * g["cpu_ms_per_request"] / g2["cpu_ms_per_request"], 2)
    checks = {
        "saturation_vs_router": (v.get("saturation_vs_router"), ">="),
        "cpu_ms_per_request": (v.get("cpu_ms_per_request"), "<="),
        "added_ttft_p50_ms_200": (v.get("added_ttft_p50_ms_200"), "<="),
        "added_ttft_p99_ms_200": (v.get("added_ttft_p99_ms_200"), "<="),
        "workers_scaling": (v.get("workers_scaling_from_cpu"), ">="),
    }
    missed = []
    for k, (val, op) in checks.items():
        goal = TARGETS[k]
        if val is None or (val < goal if op == ">=" else val > goal):
            missed.append(f"{k} = {h.fmt(val)} (target {op} {goal:g})")
    v["missed"] = missed
    v["met"] = not missed
    out["verdict"] = v
    return out


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


# --------------------------------------------------------------------------------------------
# profile


def profile_gateway(gw: Target, procs: list[h.Proc], data: dict[str, Any]) -> None:
    """py-spy the gateway for 10 s under 500 req/s: a flame graph (if small) and a text summary."""
    spy = h.VENV_BIN / "py-spy"
    if not spy.exists():
        data["profile"] = {"note": f"py-spy not found at {spy} (pip install py-spy)"}
        return
    assert gw.proc is not None
    raw = gw.proc.log.parent / "profile.raw"
    svg = h.RESULTS / "profile_gateway.svg"
    out: dict[str, Any] = {"rate": 500.0, "seconds": 10}
    pid = ["--pid", str(gw.proc.pid)]
    # Compiled modules are C to py-spy: only --native names them (and it pauses the process per sample).
    compiled = data.get("hot_path", {}).get(gw.name) == "compiled"
    how = ["--native"] if compiled else ["--nonblocking"]
    out["native"] = compiled
    for fmt, path in (("raw", raw), ("flamegraph", svg)):
        p = subprocess.Popen(
            [str(spy), "record", *how, "-r", "250", "-d", "10", "-f", fmt, "-o", str(path), *pid],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        run_fixed(gw, procs, 500.0, 10.5, seed=11)
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
_LINE = re.compile(r":\d+\)$")


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
        frames = [_LINE.sub(")", f) for f in stack.split(";")]  # per function, not per line
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def share(d: dict[str, int], only_ours: bool = False) -> list[list[Any]]:
        items = [
            (k, v)
            for k, v in d.items()
            if not only_ours or (("inferline/" in k or "__native_inferline" in k) and not _ENTRY.search(k))
        ]
        items.sort(key=lambda kv: -kv[1])
        return [[k, round(100 * v / total, 1)] for k, v in items[:top]]

    return {"samples": total, "self_top": share(own), "inclusive_top_inferline": share(incl, only_ours=True)}


def profile_text(p: dict[str, Any]) -> str:
    lines = [f"py-spy of the inferline gateway, {p['seconds']} s at {p['rate']:g} req/s, {p.get('samples')} samples"]
    if p.get("native"):
        lines += ["(--native: the compiled hot path shows as its C functions, CPyDef_<module>___<function>)"]
    lines += ["", "self time (% of samples, where the CPU was when sampled):"]
    lines += [f"  {v:5.1f}%  {k}" for k, v in p.get("self_top", [])]
    lines += ["", "inclusive time of inferline's own frames:"]
    lines += [f"  {v:5.1f}%  {k}" for k, v in p.get("inclusive_top_inferline", [])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# output


def render(data: dict[str, Any], targets: list[Target], rates: list[float]) -> str:
    res = data["results"]
    sat = res["saturation"]
    router_rps = sat.get("vllm-router", {}).get("rps")
    cols = ["path", "saturation req/s", "vs vllm-router", "CPU ms/req", "1-core req/s"]
    for rate in rates:
        cols += [f"+TTFT p50 @{rate:g}", f"+TTFT p99 @{rate:g}"]
    rows = []
    for t in targets:
        s = sat[t.name]
        cpu = s["cpu_ms_per_request"]
        row: list[Any] = [
            t.name,
            s["rps"],
            f"{s['rps'] / router_rps:.2f}" if s["rps"] and router_rps else None,
            cpu if t.proc else None,
            round(1000 / cpu) if cpu and t.proc and t.workers == 1 else None,
        ]
        for rate in rates:
            e = res["latency"][f"{rate:g}"].get(t.name, {})
            a = e.get("added_ttft_ms", {})
            row += [a.get("p50"), a.get("p99")] if t.proc else [e.get("ttft_ms", {}).get("p50"), None]
        rows.append(row)
    caption = (
        "saturation: closed loop, completed streams/s (median of rounds); CPU ms/req: the proxy's CPU (process "
        "group) per completed request at saturation, 1-core req/s = 1000 / it; +TTFT: added over the direct "
        "path at the same open-loop rate, ms (the direct row shows its own TTFT p50)"
    )
    h.console.print(h.rich_table("Gateway overhead (16-chunk streams, instant sim)", cols, rows, caption))

    wcols = ["workers", "saturation req/s", "CPU ms/req", "capacity on free cores (req/s)", "scaling"]
    wrows = []
    g1, g2 = sat.get("inferline", {}), sat.get("inferline x2", {})
    for n, s in ((1, g1), (2, g2)):
        cpu = s.get("cpu_ms_per_request")
        wrows.append(
            [
                n,
                s.get("rps"),
                cpu,
                round(n * 1000 / cpu) if cpu else None,
                (f"{s['rps'] / g1['rps']:.2f} measured, {2 * g1['cpu_ms_per_request'] / cpu:.2f} from CPU")
                if n == 2 and s.get("rps") and g1.get("rps") and cpu and g1.get("cpu_ms_per_request")
                else None,
            ]
        )
    wcap = (
        "capacity on free cores = workers x 1000 / CPU ms per request: what the workers sustain when each has a "
        "core of its own (on this 2-core machine the generator and the sim take cores too, so the measured "
        "saturation cannot show it)"
    )
    h.console.print(h.rich_table("1 vs 2 workers (SO_REUSEPORT)", wcols, wrows, wcap))

    v = res["verdict"]
    md = h.header("Gateway overhead: direct vs inferline (1 and 2 workers) vs vllm-router", data)
    w = data["workload"]
    md += (
        f"Engine: {w['engine']}; requests: {w['requests']}; saturation: {w['saturation']}; latency: {w['latency']} "
        f"at {', '.join(f'{r:g}' for r in rates)} req/s; {w['rounds']} round(s), paths alternating. Generator, "
        "sim and proxies share the machine's cores.\n\n"
    )
    md += "## The table\n\n" + h.md_table(cols, rows) + "\n" + caption + ".\n\n"
    hot = data.get("hot_path", {})
    compiled, pure = sat.get("inferline", {}), sat.get("inferline pure", {})
    if compiled.get("cpu_ms_per_request") and pure.get("cpu_ms_per_request"):
        md += (
            f"Hot path (each gateway's start-up line): inferline {hot.get('inferline')}, inferline x2 "
            f"{hot.get('inferline x2')}, inferline pure {hot.get('inferline pure')}. Compiled vs pure Python, "
            f"same code, same run: CPU per request x{compiled['cpu_ms_per_request'] / pure['cpu_ms_per_request']:.2f}"
            f", saturation x{compiled['rps'] / pure['rps']:.2f}.\n\n"
        )
    md += "## 1 vs 2 workers\n\n" + h.md_table(wcols, wrows) + "\n" + wcap + ".\n\n"
    md += "## Every path at saturation\n\n"
    scols = ["path", "req/s per round", "proxy cores", "sim CPU ms/req", "generator CPU ms/req", "errors", "load 1m"]
    srows = [
        [
            t.name,
            ", ".join(h.fmt(x) for x in sat[t.name]["rps_runs"]),
            sat[t.name]["cpu_cores"] if t.proc else None,
            sat[t.name]["sim_cpu_ms_per_request"],
            sat[t.name]["loadgen_cpu_ms_per_request"],
            "; ".join(str(e) for e in sat[t.name]["errors"] if e) or "0",
            ", ".join(h.fmt(x) for x in sat[t.name]["loadavg_1m"]),
        ]
        for t in targets
    ]
    md += h.md_table(scols, srows) + "\n"
    lcols = ["rate", "path", "TTFT p50", "TTFT p99", "+TTFT p50", "+TTFT p99", "errors", "proxy CPU ms/req", "load"]
    lrows = []
    for rate in rates:
        for t in targets:
            e = res["latency"][f"{rate:g}"].get(t.name)
            if e is None:
                continue
            a = e.get("added_ttft_ms", {})
            lrows.append(
                [
                    f"{rate:g}",
                    t.name,
                    e["ttft_ms"]["p50"],
                    e["ttft_ms"]["p99"],
                    a.get("p50"),
                    a.get("p99"),
                    f"{e['error_ratio']:.1%}",
                    e["cpu_ms_per_request"].get(t.name) if t.proc else None,
                    ", ".join(h.fmt(x) for x in e["loadavg_1m"]),
                ]
            )
    md += "\n## Latency at fixed rates (ms)\n\n" + h.md_table(lcols, lrows) + "\n"
    idle = data.get("idle_cpu_ratio", {})
    md += "Idle CPU (2 s, no load): " + ", ".join(f"{k} {val:.1%}" for k, val in idle.items()) + ".\n\n"
    md += "## Targets (gateway issue)\n\n"
    md += f"- saturation vs vllm-router: {h.fmt(v.get('saturation_vs_router'))} (target >= 1)\n"
    md += (
        f"- gateway CPU per streamed request: {h.fmt(v.get('cpu_ms_per_request'))} ms (target <= 0.30); "
        f"vs the router's: {h.fmt(v.get('cpu_per_request_vs_router'))}x\n"
    )
    md += (
        f"- added TTFT at 200 req/s: p50 {h.fmt(v.get('added_ttft_p50_ms_200'))} ms (target <= 0.6), "
        f"p99 {h.fmt(v.get('added_ttft_p99_ms_200'))} ms (target <= 1.5)\n"
    )
    md += (
        f"- 1 -> 2 workers: {h.fmt(v.get('workers_scaling_measured'))}x measured here, "
        f"{h.fmt(v.get('workers_scaling_from_cpu'))}x from CPU per request (target >= 1.8 on two free cores)\n"
    )
    md += f"- verdict: {'met' if v.get('met') else 'MISSED: ' + '; '.join(v.get('missed', []))}\n\n"
    if data["failed"]:
        md += "## Not measured\n\n" + "".join(f"- {k}: {why}\n" for k, why in data["failed"].items()) + "\n"
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
