"""Calibrate the simulator's cpu-smollm2 profile against the real embedded engine it models.

The same closed-loop concurrency sweep (1, 2, 4, 8 users; 128-word prompts, exactly 64 output tokens
with ignore_eos; a fresh seed per step, as llama.cpp's prompt cache would otherwise serve a step's
repeated prompts without prefill; the same seeds for both) is run with `inferline bench` straight against

  real  `inferline engine --parallel 8` (llama.cpp via xllamacpp, SmolLM2-135M Q4_1, all cores)
  sim   `inferline sim --profile cpu-smollm2` (time-scale 1)

one after the other (never both at once: the real engine needs the cores). Reported per step:
TTFT p50, TPOT p50 and output throughput of each, and the ratio sim/real; a ratio outside
0.8-1.25 is flagged. From the real engine's numbers the script fits the profile's step model
(TPOT(n) = step_base_s + n * decode_seq_s; prefill from TTFT at one user) and prints it next to
the profile's values, as the proposal for src/inferline/sim/profiles.py.

The real engine shares two cores with the load generator (and with anything else running on the
machine): the CPU used by other processes during each sweep is measured (/proc/stat minus the engine
and this process), and a warning is printed when it exceeds a quarter of a core, since the real numbers
then say more about the neighbours than about the engine.

    .venv/bin/python benchmarks/calibrate_sim.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    INFERLINE,
    Stack,
    console,
    free_port,
    git_commit,
    header,
    load,
    machine,
    machine_busy_s,
    main_guard,
    md_table,
    now_iso,
    rich_table,
    write_results,
)

from inferline.sim.profiles import CPU_SMOLLM2

CONCURRENCY = (1, 2, 4, 8)
INPUT_WORDS = 128
OUTPUT_TOKENS = 64
TOLERANCE = 0.25  # |ratio - 1| above this (ratio > 1.25 or < 0.8) is "off"
BUSY_CORES = 0.25  # other processes using more CPU than this during a real step: not a clean measurement


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def sweep(
    stack: Stack, target: str, window_s: float, grace_s: float, threads: int = 0, users: tuple[int, ...] = CONCURRENCY
) -> dict[str, Any]:
    port = free_port()
    if target == "real":
        argv = [INFERLINE, "engine", "--parallel", "8", "--threads", str(threads), "--port", str(port)]
    else:
        argv = [INFERLINE, "sim", "--profile", "cpu-smollm2", "--port", str(port)]
    la0 = loadavg()
    p = stack.start(target, argv)
    url = f"http://127.0.0.1:{port}"
    stack.wait_http(p, url + "/health", 90)
    warm_s = warm_up(stack, url)
    # One bench run per step, each with its own seed: llama.cpp keeps finished prompts in a prompt cache
    # (per slot and in RAM), so a step that repeated the previous step's prompts would skip their prefill.
    # CPU is measured per step: the engine's, this process's (the load generator), and everything else's.
    steps = []
    totals = {"wall": 0.0, "engine": 0.0, "me": 0.0, "others": 0.0}
    for i, c in enumerate(users):
        cpu0, t0, busy0, me0 = p.cpu_s(), time.monotonic(), machine_busy_s(), sum(os.times()[:2])
        r = load(
            url,
            stack,
            concurrency=(c,),
            duration_s=window_s,
            grace_s=grace_s,
            workload="random",
            input={"mean": INPUT_WORDS},
            output={"mean": OUTPUT_TOKENS},
            ignore_eos=True,
            seed=100 + i,
        )
        wall = time.monotonic() - t0
        eng = p.cpu_s() - cpu0
        me = sum(os.times()[:2]) - me0
        others = max(0.0, machine_busy_s() - busy0 - eng - me)
        for k, v in (("wall", wall), ("engine", eng), ("me", me), ("others", others)):
            totals[k] += v
        s = r.summary
        steps.append(
            {
                "concurrency": c,
                "completed": s["completed"],
                "errors": s["errors"],
                "ttft_ms": s["ttft_ms"],
                "tpot_ms": s["tpot_ms"],
                "e2e_ms": s["e2e_ms"],
                "output_throughput_tps": s["output_throughput_tps"],
                "prompt_tokens_mean": (s["input_tokens"] / s["completed"]) if s["completed"] else None,
                "output_tokens_mean": (s["output_tokens"] / s["completed"]) if s["completed"] else None,
                "engine_cpu_cores": round(eng / wall, 2),
                "other_processes_cpu_cores": round(others / wall, 2),
                "clean": others / wall <= BUSY_CORES,
            }
        )
    stack.stop(p)
    return {
        "target": target,
        "loadavg_before": la0,
        "warm_up_s": round(warm_s, 1),
        "engine_cpu_cores": round(totals["engine"] / totals["wall"], 2),
        "loadgen_cpu_cores": round(totals["me"] / totals["wall"], 2),
        "other_processes_cpu_cores": round(totals["others"] / totals["wall"], 2),
        "steps": steps,
    }


def warm_up(stack: Stack, url: str, budget_s: float = 40.0) -> float:
    """Unrecorded requests until one decodes at speed: right after start, the model's pages may still be
    coming from disk (the machine's page cache is shared), and the first requests are many times slower."""
    t0 = time.monotonic()
    for k in range(20):
        run = load(
            url,
            stack,
            concurrency=(1,),
            num_requests=2,
            workload="random",
            input={"mean": 32},
            output={"mean": 16},
            ignore_eos=True,
            seed=9000 + k,
            request_timeout_s=budget_s,
        )
        tpot = run.summary["tpot_ms"]["p50"]
        if (tpot is not None and tpot < 25.0) or time.monotonic() - t0 > budget_s:
            break
    return time.monotonic() - t0


def fit(real: dict[str, Any]) -> dict[str, float] | None:
    """Step model from the real engine: TPOT(n) = base + n * seq (least squares over the sweep), and
    prefill seconds per prompt token from TTFT at one user (TTFT = prefill + one decode step)."""
    clean = [st for st in real["steps"] if st["clean"]]
    pts = [(st["concurrency"], st["tpot_ms"]["p50"]) for st in clean if st["tpot_ms"]["p50"] is not None]
    if len(pts) < 2:
        return None
    n = np.array([p[0] for p in pts], dtype=float)
    tpot = np.array([p[1] for p in pts], dtype=float) / 1000.0
    seq, base = np.polyfit(n, tpot, 1)
    if seq <= 0 or base <= 0:
        return None
    one = next((st for st in clean if st["concurrency"] == 1), None)
    prefill = None
    if one and one["ttft_ms"]["p50"] is not None and one["prompt_tokens_mean"]:
        prefill = max(0.0, one["ttft_ms"]["p50"] / 1000.0 - (base + seq)) / one["prompt_tokens_mean"]
    return {
        "step_base_s": float(base),
        "decode_seq_s": float(seq),
        "prefill_token_s": float(prefill) if prefill is not None else float("nan"),
        "single_stream_tok_s": float(1.0 / (base + seq)),
        "eight_stream_tok_s": float(8.0 / (base + 8 * seq)),
    }


def ratio(sim: float | None, real: float | None) -> float | None:
    if sim is None or real is None or real == 0:
        return None
    return sim / real


def flag(r: float | None) -> str:
    if r is None:
        return "–"
    off = r > 1 + TOLERANCE or r < 1 / (1 + TOLERANCE)
    return f"{r:.2f}" + (" !" if off else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 and 8 users, 8 s per step (< 2 min)")
    ap.add_argument("--threads", type=int, default=0, help="real engine's CPU threads (0 = all cores, as profiled)")
    args = ap.parse_args()
    window = 8.0 if args.quick else 25.0
    users = (1, 8) if args.quick else CONCURRENCY
    stack = Stack(budget_s=115 if args.quick else 400)
    data: dict[str, Any] = {
        "benchmark": "calibrate_sim",
        "date": now_iso(),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "git": git_commit(),
        "config": {
            "concurrency": users,
            "window_s_per_step": window,
            "input_words": INPUT_WORDS,
            "output_tokens": OUTPUT_TOKENS,
            "ignore_eos": True,
            "real": f"inferline engine --parallel 8 --threads {args.threads} (0 = all cores)",
            "sim": "inferline sim --profile cpu-smollm2 (time-scale 1)",
            "profile": {
                k: getattr(CPU_SMOLLM2, k)
                for k in ("step_base_s", "decode_seq_s", "kv_token_s", "prefill_token_s", "max_num_seqs")
            },
            "cores": os.cpu_count(),
        },
    }
    console.print(
        f"[bold]calibrate_sim[/]: closed loop {', '.join(map(str, users))} users, {INPUT_WORDS}-word prompts, "
        f"{OUTPUT_TOKENS} output tokens, {window:g} s per step; real engine, then the sim"
    )
    results = {}
    for target in ("real", "sim"):
        t0 = time.monotonic()
        results[target] = sweep(
            stack, target, window, grace_s=6.0 if args.quick else 20.0, threads=args.threads, users=users
        )
        console.print(
            f"  {target}: {time.monotonic() - t0:.0f}s, load average before {results[target]['loadavg_before']}, "
            f"CPU cores used: engine {results[target]['engine_cpu_cores']}, load generator "
            f"{results[target]['loadgen_cpu_cores']}, other processes {results[target]['other_processes_cpu_cores']}"
        )
    stack.stop_all()
    data["results"] = results
    cols = [
        "users",
        "TTFT p50 real ms",
        "TTFT p50 sim ms",
        "TTFT sim/real",
        "TPOT p50 real ms",
        "TPOT p50 sim ms",
        "TPOT sim/real",
        "tok/s real",
        "tok/s sim",
        "tok/s sim/real",
        "prompt tok real/sim",
        "real engine / others CPU",
    ]
    table_rows = []
    ratios = []
    for real_st, sim_st in zip(results["real"]["steps"], results["sim"]["steps"], strict=True):
        rt = ratio(sim_st["ttft_ms"]["p50"], real_st["ttft_ms"]["p50"])
        rp = ratio(sim_st["tpot_ms"]["p50"], real_st["tpot_ms"]["p50"])
        rx = ratio(sim_st["output_throughput_tps"], real_st["output_throughput_tps"])
        ratios.append(
            {"concurrency": real_st["concurrency"], "ttft": rt, "tpot": rp, "throughput": rx, "clean": real_st["clean"]}
        )
        pr, ps = real_st["prompt_tokens_mean"], sim_st["prompt_tokens_mean"]
        table_rows.append(
            [
                real_st["concurrency"],
                real_st["ttft_ms"]["p50"],
                sim_st["ttft_ms"]["p50"],
                flag(rt),
                real_st["tpot_ms"]["p50"],
                sim_st["tpot_ms"]["p50"],
                flag(rp),
                real_st["output_throughput_tps"],
                sim_st["output_throughput_tps"],
                flag(rx),
                f"{pr:.0f}/{ps:.0f}" if pr and ps else "–",
                f"{real_st['engine_cpu_cores']:.2f} / {real_st['other_processes_cpu_cores']:.2f}"
                + ("" if real_st["clean"] else " busy"),
            ]
        )
    data["ratios"] = ratios
    fitted = fit(results["real"])
    data["fit"] = fitted
    busy_steps = [st["concurrency"] for st in results["real"]["steps"] if not st["clean"]]
    caption = (
        "ratio = sim / real; '!' = off by more than 25%. TPOT = (E2E - TTFT) / (tokens - 1), medians. "
        "prompt tok = mean prompt tokens per request as each engine reported them (real: SmolLM2's tokenizer; "
        "sim: its chars/4 estimate). Last column: CPU cores used during the real step by the engine and by "
        f"other processes on the machine ('busy' above {BUSY_CORES}: the real numbers measure the neighbours "
        "too; llama.cpp's threads wait for each other at every step, so a busy core slows both)."
    )
    console.print(rich_table("Simulator (cpu-smollm2) vs the real embedded engine", cols, table_rows, caption))
    p = CPU_SMOLLM2
    lines = []
    if fitted:
        prof_rows = [
            ["step_base_s (ms)", p.step_base_s * 1e3, fitted["step_base_s"] * 1e3],
            ["decode_seq_s (ms)", p.decode_seq_s * 1e3, fitted["decode_seq_s"] * 1e3],
            [
                "prefill tok/s",
                1 / p.prefill_token_s,
                1 / fitted["prefill_token_s"] if fitted["prefill_token_s"] else None,
            ],
            ["1-stream tok/s", 1 / (p.step_base_s + p.decode_seq_s), fitted["single_stream_tok_s"]],
            ["8-stream tok/s", 8 / (p.step_base_s + 8 * p.decode_seq_s), fitted["eight_stream_tok_s"]],
        ]
        console.print(rich_table("Step model: profile vs fit to the real engine", ["", "profile", "fit"], prof_rows))
        lines.append(md_table(["", "profile", "fit to real"], prof_rows))
    clean = [r for r in ratios if r["clean"]]
    off = [
        r
        for r in clean
        if any(
            isinstance(v, float) and abs(np.log(v)) > np.log(1 + TOLERANCE)
            for k, v in r.items()
            if k in ("ttft", "tpot", "throughput")
        )
    ]
    if not clean:
        verdict = "No clean step: other processes were busy during every real step; nothing can be concluded."
    elif off:
        verdict = f"{len(off)} of {len(clean)} clean steps off by more than 25% in TTFT, TPOT or throughput."
    else:
        verdict = f"Every clean step ({len(clean)} of {len(ratios)}) within 25% in TTFT, TPOT and throughput."
    if busy_steps:
        verdict += (
            f" Steps with {', '.join(map(str, busy_steps))} users ran while other processes used more than "
            f"{BUSY_CORES} cores: not a clean measurement of the engine, left out of the verdict and the fit."
        )
    console.print(verdict)
    data["verdict"] = verdict
    md = header("calibrate_sim: the cpu-smollm2 profile vs the real embedded engine", data)
    md += (
        f"Closed loop, {', '.join(map(str, users))} users, {window:g} s per step, {INPUT_WORDS}-word prompts, "
        f"{OUTPUT_TOKENS} output tokens (ignore_eos), bench straight at each engine (no gateway), "
        "fresh prompts in each step (seed 100 + step index). "
        f"Real: `inferline engine --parallel 8` (CPU cores during its sweep: engine "
        f"{results['real']['engine_cpu_cores']}, load generator {results['real']['loadgen_cpu_cores']}, "
        f"other processes {results['real']['other_processes_cpu_cores']}); "
        f"sim: `inferline sim --profile cpu-smollm2`.\n\n"
    )
    md += md_table(cols, table_rows) + "\n" + caption + "\n\n"
    if lines:
        md += "Step model (profile vs a fit to the real engine's clean steps: TPOT by users, TTFT at one user):\n\n"
        md += lines[0] + "\n"
    md += verdict + "\n"
    j, m = write_results("calibrate_sim", data, md, quick=args.quick)
    console.print(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    main_guard(main)
