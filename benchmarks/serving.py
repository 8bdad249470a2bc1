"""Serving: tokens/s and TTFT through inferline vs the engine direct, with real engines on this CPU.

    .venv/bin/python benchmarks/serving.py [--quick] [--no-vllm] [--embedded] [--threads N]

Closed loop (1, 8 and 32 concurrent streams; each user sends its next request when its stream ends),
chat streaming, ~32-token prompts, 128 output tokens (ignore_eos), on SmolLM2-135M:

  llama.cpp (the embedded engine, xllamacpp):
    direct        `inferline engine --parallel 8 --ctx-per-slot 2048 --threads T` (standalone HTTP engine)
    via gateway   the same engine process behind `inferline serve` (`kind: llamacpp`, max_num_seqs 8)
    embedded      `inferline serve` with its own in-process engine (`kind: embedded`, same settings)
  vLLM 0.32 CPU (scripts/vllm, skipped with --no-vllm or --quick, or with a note when it cannot start):
    direct        vLLM's OpenAI server (max-num-seqs 8)
    via gateway   behind `inferline serve` (`kind: vllm`, max_num_seqs 8)

Paths of one engine alternate run by run, `--rounds` times, so drift on a shared machine hits both.
Both engines send one chunk per token. At 1 stream: requests one after another for the window;
tokens/s from `warm` s to the end of the window (the open stream is cut), TTFT over the requests whose
first token came within it. At N > 1 streams: a burst, N users send one request each at once and every
one is followed to its end (on 8 slots, 32 streams are 4 waves; TTFT includes the queue wait, for every
path alike). TTFT is taken over exactly those N requests: selecting them by a time window instead made
the 32-stream TTFT depend on whether a wave of completions landed just before the cut (the embedded
path's "4.4 s vs 1.8 s" of 2026-11-28 was one round counting 8 queued requests the others did not).
Tokens/s = content chunks per second while the engine is full: from the moment 8 (or N) requests have
their first token to the moment fewer than 8 (or N) are left in flight. Ratio = via gateway / direct
(target: lose < 2% of the engine's tokens/s).

`--embedded` runs only what the embedded-vs-separate table needs: the default `inferline serve`
(`kind: embedded`: the gateway starts llama.cpp in a child process) against the same engine started
separately behind the gateway (`kind: llamacpp`), at 1, 8 and 32 streams (target: within 10% on TTFT
p50/p95 and tokens/s). Every run records the load average; on a busy machine, read the ratios, not the
absolute numbers.

Threads: the engines default to all cores, but on a 2-core machine shared with the gateway, the load
generator and other jobs, llama.cpp's threads wait for each other at every step and throughput
collapses (measured 25-48 tok/s with 2 threads vs ~80 with 1 while other work ran). The default here
is therefore `--threads 1` for llama.cpp and vLLM's OpenMP bound to one core; `--threads 0` measures
the engines' own default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

NAME = "serving"
INPUT_LEN = 32
OUTPUT_LEN = 128
VLLM_VENV = h.CACHE / "vllm-venv"
SLOTS = 8  # both engines' concurrent sequences (llama.cpp --parallel 8, vLLM --max-num-seqs 8)
PARITY = 0.10  # the embedded engine vs a separate one: within 10%


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (< 2 min): llama.cpp only, 1 and 8 streams")
    ap.add_argument("--no-vllm", action="store_true", help="skip real vLLM")
    ap.add_argument(
        "--embedded",
        action="store_true",
        help="only the embedded-vs-separate comparison: llama.cpp 'via gateway' and 'embedded' (no direct, no vLLM)",
    )
    ap.add_argument("--threads", type=int, default=1, help="engine CPU threads (0 = the engines' default: all)")
    ap.add_argument("--concurrency", default=None, help="comma list (default 1,8,32; quick 1,8 except with --embedded)")
    ap.add_argument("--rounds", type=int, default=None, help="alternations per concurrency (default 2; quick 1)")
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="hard wall-clock limit, s (default 1200; quick 115, with --embedded 240)",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="recompute the tables from results/serving.json (with --embedded: serving_embedded.json)",
    )
    return ap.parse_args()


def measure(
    url: str, procs_all: list[h.Proc], conc: int, window: float, warm: float, seed: int, llama: bool = False
) -> dict[str, Any]:
    # 1 stream: back to back, cut at the end of the window; more: a burst, each request followed to its end
    load: dict[str, Any] = {"duration_s": window, "grace_s": 0.0, "request_timeout_s": 300.0}
    if conc > 1:
        load = {"num_requests": conc, "request_timeout_s": 900.0}
    m = h.bench(
        url,
        procs_all,
        concurrency=(conc,),
        input={"mean": INPUT_LEN},
        output={"mean": OUTPUT_LEN},
        ignore_eos=True,
        seed=seed,  # fresh prompts every run: llama.cpp's slots reuse a cached prompt prefix
        # ... and the chat template's own prefix (SmolLM2's default system prompt) would still be cached from
        # the run before: warmer on the separate engine, which serves two paths (direct, via gateway), than on
        # the embedded one. Every llama.cpp prefill is whole, so no path inherits another's cache.
        extra_body={"cache_prompt": False} if llama else {},
        **load,
    )
    if conc > 1:
        t0, t1 = _engine_full(m.records, min(conc, SLOTS))
        ttfts = sorted((r.chunk_s[0] - r.send_s) * 1e3 for r in m.records if r.chunk_s and r.send_s is not None)
    else:
        t0, t1 = warm, window
        ttfts = sorted(
            (r.chunk_s[0] - r.send_s) * 1e3
            for r in m.records
            if r.chunk_s and r.send_s is not None and r.chunk_s[0] <= window
        )
    counted = max(t1 - t0, 1e-9)
    tokens = sum(1 for r in m.records for t in r.chunk_s if t0 <= t <= t1)
    s = m.summary
    out = {
        "tokens_per_s": round(tokens / counted, 2),
        "tokens_in_window": tokens,
        "window_s": [round(t0, 2), round(t1, 2)],
        "ttft_ms": {"p50": _q(ttfts, 0.5), "p95": _q(ttfts, 0.95), "p99": _q(ttfts, 0.99), "count": len(ttfts)},
        "completed": s["completed"],
        "cut_at_window_end": s["cancelled"],
        "other_errors": {k: v for k, v in s["errors"].items() if k != "cancelled"},
        "error_details": sorted({f"{r.error}: {r.error_detail}" for r in m.records if _real_error(r)})[:3],
        "cpu_ratio": m.cpu,
        "loadavg_1m": m.loadavg[0] if m.loadavg else None,
    }
    h.settle(procs_all, max_s=20)
    return out


def _engine_full(records: list[Any], k: int) -> tuple[float, float]:
    """The span in which the engine had k requests decoding: from the k-th first token to the moment fewer
    than k were left in flight (a burst of N requests: the (N - k + 1)-th completion)."""
    firsts = sorted(r.chunk_s[0] for r in records if r.chunk_s)
    ends = sorted(r.end_s for r in records)
    if len(firsts) < k or len(ends) < k or ends[len(ends) - k] <= firsts[k - 1]:
        return 0.0, max(ends, default=1.0)  # never full (errors): the whole run
    return firsts[k - 1], ends[len(ends) - k]


def _real_error(r: Any) -> bool:
    return bool(r.error) and r.error != "cancelled"


def _q(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    i = q * (len(xs) - 1)
    lo = int(i)
    hi = min(lo + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (i - lo), 2)


def run_engine(
    engine: str,
    paths: dict[str, h.Proc],
    direct: str,
    conc_list: list[int],
    rounds: int,
    window: float,
    warm: float,
    procs_all: list[h.Proc],
    budget_ok: Any,
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    names = list(paths)
    for conc in conc_list:
        for rnd in range(rounds):
            if not budget_ok():
                h.console.print(f"[yellow]{engine}: time budget reached; skipping the rest[/]")
                return runs
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                seed = 1000 * conc + 10 * rnd + names.index(name)
                # the first batch's prompts are prefilled first: count from later when many start at once
                r = measure(
                    paths[name].url,
                    procs_all,
                    conc,
                    window,
                    warm if conc > 1 else warm / 2,
                    seed,
                    llama=engine == "llama.cpp",
                )
                r.update(engine=engine, path=name, concurrency=conc, round=rnd + 1, direct=direct)
                runs.append(r)
                h.console.print(
                    f"{engine:9s} {conc:3d} streams {name:12s} round {rnd + 1}: {r['tokens_per_s']:7.1f} tok/s  "
                    f"TTFT p50 {h.fmt(r['ttft_ms']['p50'])} ms  errors {r['other_errors'] or '-'}  "
                    f"CPU {r['cpu_ratio']}  load {r['loadavg_1m']}"
                )
    return runs


def _tree_pids(root: int) -> list[int]:
    """root and its descendants (by parent pid), whatever their process group or session."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = h._stat_fields(int(name))
            if f:
                children.setdefault(int(f[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _count_children(p: h.Proc) -> h.Proc:
    """The embedded engine is a child process in a session of its own: count the gateway's whole tree."""
    p.cpu_s = lambda: h.group_cpu_s(p.pid) + sum(h.cpu_s(c) for c in _tree_pids(p.pid) if c != p.pid)  # type: ignore[method-assign]
    p.rss_mb = lambda: h.group_rss_mb(p.pid) + sum(h.group_rss_mb(c) for c in _tree_pids(p.pid) if c != p.pid)  # type: ignore[method-assign]
    return p


def _gateway_config(backend: dict[str, Any]) -> dict[str, Any]:
    cfg = h.gateway_config([backend])
    # 32 streams on 8 slots: the last of 4 waves waits ~3 requests' time (~35 s on llama.cpp): past the
    # default queue timeout (30 s), which would turn the burst's tail into 429s.
    cfg["admission"]["queue_timeout_s"] = 600
    return cfg


def start_llama(
    procs: h.Stack, threads: int, data: dict[str, Any], with_direct: bool = True
) -> tuple[dict[str, h.Proc], list[h.Proc]]:
    port = h.free_port()
    eng = procs.start(
        "engine",
        h.inferline_cmd(
            "engine", "--port", str(port), "--parallel", "8", "--ctx-per-slot", "2048", "--threads", str(threads)
        ),
    )
    eng.url = f"http://127.0.0.1:{port}"
    procs.wait_http(eng, eng.url + "/health", 180)
    gw = procs.gateway(
        "gateway", _gateway_config({"name": "llama0", "kind": "llamacpp", "url": eng.url, "max_num_seqs": 8})
    )
    emb = procs.gateway(
        "embedded",
        _gateway_config(
            {
                "name": "embedded0",
                "kind": "embedded",
                "embedded": {"parallel": 8, "ctx_per_slot": 2048, "threads": threads},
            }
        ),
        timeout_s=180,
    )
    data["startup_s"].update({"llama engine": eng.started_s, "gateway (llamacpp)": gw.started_s})
    data["startup_s"]["gateway (embedded)"] = emb.started_s
    _count_children(emb)
    paths = {"direct": eng, "via gateway": gw, "embedded": emb}
    if not with_direct:
        del paths["direct"]  # the engine still runs: 'via gateway' needs it
    return paths, [eng, gw, emb]


def start_vllm(procs: h.Stack, threads: int, data: dict[str, Any]) -> dict[str, h.Proc] | None:
    setup = h.REPO / "scripts" / "vllm" / "setup.sh"
    start = h.REPO / "scripts" / "vllm" / "start.sh"
    h.console.print("vLLM: scripts/vllm/setup.sh (instant when cached, ~3 min on a fresh machine)")
    t0 = time.monotonic()
    try:
        rc = subprocess.run(["bash", str(setup)], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        data["failed"]["vllm"] = "scripts/vllm/setup.sh did not finish within 600 s"
        return None
    data["startup_s"]["vllm setup.sh"] = round(time.monotonic() - t0, 1)
    if rc.returncode != 0:
        tail = " | ".join(rc.stderr.strip().splitlines()[-5:])
        data["failed"]["vllm"] = f"scripts/vllm/setup.sh failed (rc {rc.returncode}): {tail}"
        return None
    data["peer_versions"]["vllm"] = _vllm_version()
    port = h.free_port()
    env = {"INFERLINE_VLLM_FOREGROUND": "1"}  # our own process group, stopped by the harness
    if threads > 0:
        env["VLLM_CPU_OMP_THREADS_BIND"] = "0" if threads == 1 else f"0-{threads - 1}"
    p = procs.start("vllm", ["bash", str(start), str(port)], env=env)
    p.url = f"http://127.0.0.1:{port}"
    h.console.print("vLLM: starting (35-90 s)")
    try:
        procs.wait_http(p, p.url + "/health", 300)
    except RuntimeError as exc:
        procs.stop(p)
        data["failed"]["vllm"] = f"vLLM did not start: {exc}"[:2000]
        return None
    data["startup_s"]["vllm"] = p.started_s
    gw = procs.gateway(
        "gateway-vllm", _gateway_config({"name": "vllm0", "kind": "vllm", "url": p.url, "max_num_seqs": 8})
    )
    return {"direct": p, "via gateway": gw}


def _vllm_version() -> str | None:
    try:
        out = subprocess.run(
            [str(VLLM_VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def main() -> int:
    args = parse_args()
    # --embedded alone writes results/serving_embedded.*: it must not replace the full run's published tables
    name = f"{NAME}_embedded" if args.embedded else NAME
    if args.report_only:
        import orjson

        saved: dict[str, Any] = orjson.loads((h.RESULTS / f"{name}.json").read_bytes())
        saved["summary"] = summarize(saved["runs"])
        saved["parity"] = parity(saved["runs"])
        h.write_results(name, saved, render(saved))
        return 0
    quick = args.quick
    # --embedded --quick keeps 32 streams (the comparison's point): ~2.5 min; plain --quick stays under 2.
    conc_list = [int(x) for x in (args.concurrency or ("1,8" if quick and not args.embedded else "1,8,32")).split(",")]
    rounds = args.rounds or (1 if quick else 2)
    budget = args.budget or (115.0 if quick and not args.embedded else 240.0 if quick else 1200.0)
    soft_s = budget * 0.8
    procs = h.Stack(budget)
    t_start = time.monotonic()
    llama_window, llama_warm = (6.0, 2.5) if quick else (12.0, 4.0)
    vllm_window, vllm_warm = 12.0, 4.0
    data: dict[str, Any] = {
        "benchmark": NAME,
        "date": h.now_iso(),
        "mode": "quick" if quick else "full",
        "machine": h.machine(),
        "peer_versions": {},
        "failed": {},
        "startup_s": {},
        "workload": {
            "model": "SmolLM2-135M-Instruct (Q4_1 GGUF on llama.cpp; bf16 safetensors on vLLM)",
            "requests": f"chat, stream, prompt ~{INPUT_LEN} tokens, {OUTPUT_LEN} output tokens (ignore_eos), usage on",
            "load": "1 stream: closed loop for a window; N > 1: a burst of N requests, each to its end",
            "concurrency": conc_list,
            "rounds": rounds,
            "threads": args.threads,
            "llama_window_s": llama_window,
            "llama_counted_from_s": llama_warm,
            "vllm_window_s": vllm_window,
            "vllm_counted_from_s": vllm_warm,
        },
    }
    try:
        from importlib import metadata

        import xllamacpp  # noqa: F401

        data["peer_versions"]["xllamacpp"] = metadata.version("xllamacpp")
    except Exception:
        pass

    def budget_ok() -> bool:
        return time.monotonic() - t_start < soft_s

    runs: list[dict[str, Any]] = []
    llama, lp = start_llama(procs, args.threads, data, with_direct=not args.embedded)
    before = {p.name: p.cpu_s() for p in lp}
    time.sleep(2.0)
    data["idle_cpu_ratio"] = {p.name: round((p.cpu_s() - before[p.name]) / 2.0, 3) for p in lp}
    data["rss_mb"] = {p.name: p.rss_mb() for p in lp}
    for p in llama.values():  # warm-up: load the weights into cache, open connections
        h.bench(p.url, lp, concurrency=(2,), num_requests=2, output={"mean": 16}, input={"mean": 16})
    h.settle(lp, max_s=10)
    runs += run_engine("llama.cpp", llama, "direct", conc_list, rounds, llama_window, llama_warm, lp, budget_ok)
    for p in lp:
        procs.stop(p)

    if quick or args.no_vllm or args.embedded:
        why = "--quick" if quick else "--no-vllm" if args.no_vllm else "--embedded"
        data["failed"]["vllm"] = f"skipped ({why})"
    elif procs.remaining_s() < 200:
        data["failed"]["vllm"] = "skipped: not enough time left in the budget"
    else:
        vllm = start_vllm(procs, args.threads, data)
        if vllm is not None:
            vp = list(vllm.values())
            for p in vllm.values():
                h.bench(p.url, vp, concurrency=(2,), num_requests=2, output={"mean": 16}, input={"mean": 16})
            h.settle(vp, max_s=10)
            data["rss_mb"].update({p.name: p.rss_mb() for p in vp})
            runs += run_engine("vLLM", vllm, "direct", conc_list, rounds, vllm_window, vllm_warm, vp, budget_ok)
            for p in vp:
                procs.stop(p)

    data["runs"] = runs
    data["summary"] = summarize(runs)
    data["parity"] = parity(runs)
    data["wall_s"] = round(time.monotonic() - t_start, 1)
    data["machine"]["loadavg_at_end"] = h.loadavg()
    procs.stop_all()
    md = render(data)
    j, m = h.write_results(name, data, md, quick=quick)
    h.console.print(f"wrote {j.relative_to(h.REPO)} and {m.relative_to(h.REPO)} in {data['wall_s']} s")
    return 0


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["engine"], r["concurrency"]) for r in runs}, key=lambda k: (k[0] != "llama.cpp", k[1]))
    for engine, conc in keys:
        sel = [r for r in runs if r["engine"] == engine and r["concurrency"] == conc]
        by_path: dict[str, list[dict[str, Any]]] = {}
        for r in sel:
            by_path.setdefault(r["path"], []).append(r)
        direct = by_path.get("direct", [])
        d_tps = statistics.median(r["tokens_per_s"] for r in direct) if direct else None
        for path, rs in by_path.items():
            tps = statistics.median(r["tokens_per_s"] for r in rs)
            # per round: ratio against the direct run of the same round (paired), then the median
            paired = []
            per_cpu = []  # the same with tokens per engine CPU-second: what other jobs took from the engine cancels
            for r in rs:
                d = next((x for x in direct if x["round"] == r["round"]), None)
                if d and d["tokens_per_s"]:
                    paired.append(r["tokens_per_s"] / d["tokens_per_s"])
                    rc, dc = _engine_cpu(r), _engine_cpu(d)
                    if rc and dc:
                        per_cpu.append((r["tokens_per_s"] / rc) / (d["tokens_per_s"] / dc))
            gw_name = {"via gateway": "gateway", "embedded": "embedded"}.get(path)
            if engine == "vLLM" and path == "via gateway":
                gw_name = "gateway-vllm"
            rows.append(
                {
                    "engine": engine,
                    "concurrency": conc,
                    "path": path,
                    "tokens_per_s": round(tps, 1),
                    "tokens_per_s_runs": [r["tokens_per_s"] for r in rs],
                    "ratio_vs_direct": round(statistics.median(paired), 3) if path != "direct" and paired else None,
                    "ratio_runs": [round(x, 3) for x in paired] if path != "direct" else None,
                    "tokens_per_engine_cpu_s": _med([r["tokens_per_s"] / c for r in rs if (c := _engine_cpu(r))]),
                    "ratio_per_engine_cpu": round(statistics.median(per_cpu), 3)
                    if path != "direct" and per_cpu
                    else None,
                    "ttft_p50_ms": _med([r["ttft_ms"]["p50"] for r in rs]),
                    "ttft_p95_ms": _med([r["ttft_ms"].get("p95") for r in rs]),
                    "ttft_p99_ms": _med([r["ttft_ms"]["p99"] for r in rs]),
                    "loadavg_1m": [r.get("loadavg_1m") for r in rs],
                    "engine_cpu_ratio": _med([_engine_cpu(r) for r in rs]),
                    "gateway_cpu_ratio": _med([r["cpu_ratio"].get(gw_name) for r in rs]) if gw_name else None,
                    "loadgen_cpu_ratio": _med([r["cpu_ratio"].get("loadgen") for r in rs]),
                    "other_errors": [r["other_errors"] for r in rs if r["other_errors"]],
                    "d_tps": d_tps,
                }
            )
    return rows


def parity(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The embedded engine (default `inferline serve`) vs the same engine started separately behind the
    gateway: per concurrency, embedded / separate paired by round, then the median over rounds."""
    rows = []
    llama = [r for r in runs if r["engine"] == "llama.cpp"]
    for conc in sorted({r["concurrency"] for r in llama}):
        sep = {r["round"]: r for r in llama if r["concurrency"] == conc and r["path"] == "via gateway"}
        emb = {r["round"]: r for r in llama if r["concurrency"] == conc and r["path"] == "embedded"}
        pairs = [(sep[k], emb[k]) for k in sorted(sep) if k in emb]
        if not pairs:
            continue

        tps = _paired_ratio(pairs, lambda r: r["tokens_per_s"])
        per_cpu = _paired_ratio(pairs, _tokens_per_stack_cpu_s)
        p50 = _paired_ratio(pairs, lambda r: r["ttft_ms"]["p50"])
        p95 = _paired_ratio(pairs, lambda r: r["ttft_ms"].get("p95"))
        ok = all(x is not None for x in (tps, p50, p95))
        within = ok and tps >= 1 - PARITY and p50 <= 1 + PARITY and p95 <= 1 + PARITY  # type: ignore[operator]
        loads = [x for s, e in pairs for x in (s.get("loadavg_1m"), e.get("loadavg_1m")) if x is not None]
        rows.append(
            {
                "concurrency": conc,
                "rounds": len(pairs),
                "separate_tokens_per_s": _med([s["tokens_per_s"] for s, _ in pairs]),
                "embedded_tokens_per_s": _med([e["tokens_per_s"] for _, e in pairs]),
                "tokens_ratio": tps,
                "tokens_per_cpu_s_ratio": per_cpu,
                "separate_ttft_p50_ms": _med([s["ttft_ms"]["p50"] for s, _ in pairs]),
                "embedded_ttft_p50_ms": _med([e["ttft_ms"]["p50"] for _, e in pairs]),
                "ttft_p50_ratio": p50,
                "separate_ttft_p95_ms": _med([s["ttft_ms"].get("p95") for s, _ in pairs]),
                "embedded_ttft_p95_ms": _med([e["ttft_ms"].get("p95") for _, e in pairs]),
                "ttft_p95_ratio": p95,
                "loadavg_1m": [min(loads), max(loads)] if loads else None,
                "within_10pct": bool(within),
            }
        )
    return rows


def _tokens_per_stack_cpu_s(r: dict[str, Any]) -> float | None:
    """tokens/s per CPU of gateway + engine: what other jobs took from the engine cancels out."""
    c: dict[str, float] = r["cpu_ratio"]
    cpu = c.get("embedded") if r["path"] == "embedded" else c.get("engine", 0.0) + c.get("gateway", 0.0)
    return r["tokens_per_s"] / cpu if cpu else None


def _paired_ratio(pairs: list[tuple[dict[str, Any], dict[str, Any]]], get: Any) -> float | None:
    xs = [get(e) / get(s) for s, e in pairs if get(s) and get(e) is not None]
    return round(statistics.median(xs), 3) if xs else None


def _engine_cpu(r: dict[str, Any]) -> float | None:
    c: dict[str, float] = r["cpu_ratio"]
    if r["path"] == "embedded":
        return c.get("embedded")  # the gateway and its engine child, counted together
    return c.get("engine", c.get("vllm"))


def _med(xs: list[Any]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def render(data: dict[str, Any]) -> str:
    cols = [
        "engine",
        "streams",
        "path",
        "tokens/s",
        "ratio vs direct",
        "per-round ratios",
        "tok per engine CPU-s",
        "ratio per engine CPU-s",
        "TTFT p50 ms",
        "TTFT p95 ms",
        "TTFT p99 ms",
        "engine CPU",
        "gateway CPU",
        "errors",
    ]
    rows = []
    for s in data["summary"]:
        rows.append(
            [
                s["engine"],
                s["concurrency"],
                s["path"],
                s["tokens_per_s"],
                s["ratio_vs_direct"],
                ", ".join(f"{x:.3f}" for x in s["ratio_runs"]) if s["ratio_runs"] else None,
                s.get("tokens_per_engine_cpu_s"),
                s.get("ratio_per_engine_cpu"),
                s["ttft_p50_ms"],
                s.get("ttft_p95_ms"),
                s["ttft_p99_ms"],
                f"{s['engine_cpu_ratio']:.0%}" if s["engine_cpu_ratio"] is not None else None,
                f"{s['gateway_cpu_ratio']:.0%}" if s["gateway_cpu_ratio"] is not None else None,
                "; ".join(str(e) for e in s["other_errors"]) or "0",
            ]
        )
    w = data["workload"]
    caption = (
        "tokens/s = content chunks/s while the engine is full (median over rounds); ratio = via gateway / direct, "
        "paired by round, median; tok per engine CPU-s = tokens/s / engine CPU (removes what other jobs took from "
        "the engine; for 'embedded' it is the gateway and its engine child together, so the relay cost stays in); "
        "TTFT over every request of the run (N > 1: the burst's N requests); CPU = CPU s / wall s (1.0 = one core)"
    )
    h.console.print(h.rich_table("serving through inferline vs the engine direct", cols, rows, caption))
    md = h.header("Serving: tokens/s and TTFT, gateway vs engine direct", data)
    md += (
        f"Model {w['model']}; {w['requests']}; {w['load']} at {w['concurrency']} streams; engine threads "
        f"{w['threads'] or 'all cores'}; 1 stream: llama.cpp {w['llama_window_s']:g} s counted from "
        f"{w['llama_counted_from_s'] / 2:g} s, vLLM {w['vllm_window_s']:g} s from {w['vllm_counted_from_s'] / 2:g} s; "
        f"{w['rounds']} round(s), paths alternating. Target: the gateway loses < 2% of the engine's tokens/s "
        "(ratio >= 0.98).\n\n"
    )
    md += h.md_table(cols, rows) + "\n" + caption + ".\n\n"
    par = data.get("parity") or []
    if par:
        pcols = [
            "streams",
            "rounds",
            "tok/s separate",
            "tok/s embedded",
            "ratio",
            "ratio per CPU-s",
            "TTFT p50 separate",
            "TTFT p50 embedded",
            "ratio",
            "TTFT p95 separate",
            "TTFT p95 embedded",
            "ratio",
            "load avg (1 min)",
            f"within {PARITY:.0%}",
        ]
        prows = [
            [
                x["concurrency"],
                x["rounds"],
                x["separate_tokens_per_s"],
                x["embedded_tokens_per_s"],
                x["tokens_ratio"],
                x.get("tokens_per_cpu_s_ratio"),
                x["separate_ttft_p50_ms"],
                x["embedded_ttft_p50_ms"],
                x["ttft_p50_ratio"],
                x["separate_ttft_p95_ms"],
                x["embedded_ttft_p95_ms"],
                x["ttft_p95_ratio"],
                "–".join(f"{v:g}" for v in x["loadavg_1m"]) if x["loadavg_1m"] else None,
                "yes" if x["within_10pct"] else "NO",
            ]
            for x in par
        ]
        pcap = (
            "llama.cpp: 'embedded' = the default `inferline serve` (kind: embedded, the engine in a child process "
            "the gateway owns) vs 'separate' = `inferline engine` started on its own behind the gateway "
            "(kind: llamacpp), same settings; TTFT in ms; ratio = embedded / separate paired by round, median; "
            "ratio per CPU-s = the same for tokens per CPU-second of gateway + engine (what other jobs took from "
            "the engine cancels out; not part of the 10% verdict); "
            "load avg = the 1-minute load average after each run (min-max) on a machine with "
            f"{data['machine'].get('cores', '?')} cores"
        )
        h.console.print(h.rich_table("embedded engine vs a separate engine", pcols, prows, pcap))
        md += "#### Embedded engine vs a separate engine\n\n" + h.md_table(pcols, prows) + "\n" + pcap + ".\n\n"
    if data["failed"]:
        md += "Not measured:\n\n" + "".join(f"- {k}: {v}\n" for k, v in data["failed"].items()) + "\n"
    return md


if __name__ == "__main__":
    h.main_guard(main)
