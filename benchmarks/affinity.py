"""Round-robin vs least-loaded vs load-gated prefix affinity, on a fleet with prefix caches.

Four simulated engines (h100-llama8b profile, `--prefix-caching`, KV cache cut to 2048 blocks =
32k tokens each) behind the gateway. Workload `prefix`: 32 groups, each with its own shared system
prompt of 1000 words (~1,350 tokens, ~85 blocks), plus a fresh 128-word user turn and 64 output
tokens; the group of each request is drawn at random. All 32 system prompts (~2,700 blocks) do not
fit in one engine's cache next to the running requests, a quarter of them does: the regime where
routing decides the hit rate. Same seed (same arrivals, prompts and groups) for every config:

  round_robin        routing.balancer round_robin, prefix_affinity false
  least_loaded       balancer least_loaded, prefix_affinity false
  ll + affinity      balancer least_loaded, prefix_affinity true (load-gated: affinity_max_load_gap 0.25)
  ll + aff., kv full the same, but admission.kv_accounting full: the KV check counts every in-flight
                     request at its full prompt + output (before: a shared prefix counted once per request)
                     instead of the engine's reported use (after, the default)

Also reported per config: the highest KV-cache use any engine showed (sampled every 0.1 s) and the
engines' preemptions — the KV admission must keep both at <= 0.85 and 0 whichever accounting it uses.

Reported: the engines' prefix cache hit rate (vllm:prefix_cache_hits_total / queries_total, in
tokens, summed over the fleet; the ceiling, every shared system prompt always cached, is printed
with it), TTFT p50/p90/p99, throughput, requests per engine (the load spread), and the gateway's
affinity decisions (hit / overloaded / new). Two offered loads: 16 req/s (moderate) and 48 req/s
(close to what the fleet serves when half the prompt tokens miss). Every config starts with cold caches.

    .venv/bin/python benchmarks/affinity.py [--quick] [--rate R ...]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Stack,
    console,
    counter,
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
ENGINES = 4
ENGINE_SEQS = 32
KV_BLOCKS = 2048
RATES = [16.0, 48.0]  # req/s over the fleet: moderate, and close to what round-robin (half the prompts missing) serves
WORKLOAD: dict[str, Any] = {
    "workload": "prefix",
    "groups": 32,
    "prefix_len": 1000,
    "input": {"mean": 128},
    "output": {"mean": 64},
    "seed": 0,
}
GW_ROUTING = {"load_interval_s": 0.1}  # the gateway reads the engines' load often: routing follows it closely
CONFIGS: list[dict[str, Any]] = [
    {"name": "round_robin", "routing": {"balancer": "round_robin", "prefix_affinity": False}},
    {"name": "least_loaded", "routing": {"balancer": "least_loaded", "prefix_affinity": False}},
    {
        "name": "ll + aff., kv full",
        "routing": {"balancer": "least_loaded", "prefix_affinity": True},
        "admission": {"kv_accounting": "full"},
    },
    {"name": "ll + affinity", "routing": {"balancer": "least_loaded", "prefix_affinity": True}},
]


class KVSampler:
    """The engines' KV-cache use, read every 0.1 s in a thread while the load runs: the peak per engine."""

    def __init__(self, urls: list[str]) -> None:
        self._urls = urls
        self.peak = [0.0] * len(urls)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> KVSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for i, u in enumerate(self._urls):
                try:
                    kv = counter(scrape(u), "vllm:kv_cache_usage_perc")
                except OSError:
                    continue
                self.peak[i] = max(self.peak[i], kv)


def run_config(stack: Stack, c: dict[str, Any], rate: float, window_s: float) -> dict[str, Any]:
    sim, urls = stack.sim(
        "sim",
        ENGINES,
        PROFILE,
        "--prefix-caching",
        "--kv-blocks",
        str(KV_BLOCKS),
        "--max-num-seqs",
        str(ENGINE_SEQS),
    )
    backends = [{"name": f"e{i}", "kind": "vllm", "url": u, "max_num_seqs": ENGINE_SEQS} for i, u in enumerate(urls)]
    gw = stack.gateway(
        "gateway",
        gateway_config(
            backends, routing={**GW_ROUTING, **c["routing"]}, admission=c.get("admission"), log_level="warning"
        ),
    )
    g0 = scrape(gw.url)
    e0 = [scrape(u) for u in urls]
    cpu0 = {p.name: p.cpu_s() for p in stack.procs}
    t0 = time.monotonic()
    with KVSampler(urls) as kv:
        run = load(gw.url, stack, rates=(rate,), duration_s=window_s, grace_s=30.0, **WORKLOAD)
    wall = time.monotonic() - t0
    cpu = {p.name: round((p.cpu_s() - cpu0[p.name]) / wall, 2) for p in stack.procs}
    g1 = scrape(gw.url)
    e1 = [scrape(u) for u in urls]
    stack.stop(gw)
    stack.stop(sim)
    per_engine = []
    for i in range(ENGINES):
        q = counter(e1[i], "vllm:prefix_cache_queries_total") - counter(e0[i], "vllm:prefix_cache_queries_total")
        h = counter(e1[i], "vllm:prefix_cache_hits_total") - counter(e0[i], "vllm:prefix_cache_hits_total")
        done = sum(
            counter(e1[i], "vllm:request_success_total", finished_reason=r)
            - counter(e0[i], "vllm:request_success_total", finished_reason=r)
            for r in ("stop", "length")
        )
        routed = counter(g1, "inferline_requests_total", backend=f"e{i}") - counter(
            g0, "inferline_requests_total", backend=f"e{i}"
        )
        preempted = counter(e1[i], "vllm:num_preemptions_total") - counter(e0[i], "vllm:num_preemptions_total")
        per_engine.append(
            {
                "engine": f"e{i}",
                "queries": q,
                "hits": h,
                "finished": done,
                "routed": routed,
                "kv_peak": kv.peak[i],
                "preemptions": preempted,
            }
        )
    decisions = {
        r: counter(g1, "inferline_prefix_affinity_decisions_total", result=r)
        - counter(g0, "inferline_prefix_affinity_decisions_total", result=r)
        for r in ("hit", "overloaded", "new")
    }
    return {
        "config": c,
        "rate_rps": rate,
        "gateway_queue_s": hist(g0, g1, "inferline_queue_time_seconds"),
        "summary": run.summary,
        "engines": per_engine,
        "affinity_decisions": decisions,
        "cpu_cores": cpu,
    }


def hit_ceiling(n: int = 400) -> float:
    """Share of prompt tokens that could ever hit: the whole-block part of each request's shared system
    prompt (as the sim renders and hashes it) over its prompt tokens, for the workload's first N requests."""
    from inferline.bench import BenchConfig
    from inferline.bench.workload import request_body, requests
    from inferline.sim.wire import CHARS_PER_TOKEN, parse_completion

    cfg = BenchConfig(url="http://unused", model="smollm2", rates=(1.0,), **WORKLOAD)
    hit = total = 0
    for spec, _ in zip(requests(cfg), range(n), strict=False):
        call = parse_completion(
            request_body(spec, cfg, "smollm2"), chat=True, served_model="smollm2", max_model_len=1 << 20,
            priority_enabled=False,
        )  # fmt: skip
        shared_chars = len(f"<|im_start|>system\n{spec.system}<|im_end|>\n")
        hit += min(shared_chars // (16 * CHARS_PER_TOKEN), (call.prompt_tokens - 1) // 16) * 16
        total += call.prompt_tokens
    return hit / total


def queue_ms(h: dict[str, float | None]) -> str:
    mean, p90 = h.get("mean"), h.get("p90")
    if mean is None or p90 is None:
        return "–"
    return f"{mean * 1000:.0f} / {p90 * 1000:.0f}"


def rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    cols = [
        "req/s offered",
        "config",
        "cache hit rate",
        "TTFT p50 ms",
        "TTFT p90 ms",
        "TTFT p99 ms",
        "E2E p50 ms",
        "gw queue mean/p90 ms",
        "peak KV",
        "preempt.",
        "req/s",
        "out tok/s",
        "requests per engine",
        "max/mean",
        "affinity hit/overl./new",
        "errors",
    ]
    out = []
    for r in results:
        s = r["summary"]
        q = sum(e["queries"] for e in r["engines"])
        h = sum(e["hits"] for e in r["engines"])
        finished = [int(e["finished"]) for e in r["engines"]]
        mean = sum(finished) / len(finished) if finished else 0
        d = r["affinity_decisions"]
        aff = "/".join(str(int(d[k])) for k in ("hit", "overloaded", "new")) if any(d.values()) else "–"
        out.append(
            [
                r["rate_rps"],
                r["config"]["name"],
                f"{h / q:.1%}" if q else "–",
                s["ttft_ms"]["p50"],
                s["ttft_ms"]["p90"],
                s["ttft_ms"]["p99"],
                s["e2e_ms"]["p50"],
                queue_ms(r["gateway_queue_s"]),
                f"{max(e['kv_peak'] for e in r['engines']):.2f}",
                int(sum(e["preemptions"] for e in r["engines"])),
                s["request_throughput_rps"],
                s["output_throughput_tps"],
                " / ".join(str(n) for n in finished),
                round(max(finished) / mean, 2) if mean else None,
                aff,
                ", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "0",
            ]
        )
    return cols, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the high rate only, 20 s of arrivals per config (< 3 min)")
    ap.add_argument("--rate", type=float, action="append", help=f"req/s over the fleet, repeatable (default {RATES})")
    args = ap.parse_args()
    rates = args.rate or (RATES[-1:] if args.quick else RATES)
    window = 20.0 if args.quick else 40.0
    stack = Stack(budget_s=160 if args.quick else 520)
    data: dict[str, Any] = {
        "benchmark": "affinity",
        "date": now_iso(),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "git": git_commit(),
        "config": {
            "profile": PROFILE,
            "engines": ENGINES,
            "engine_max_num_seqs": ENGINE_SEQS,
            "kv_blocks_per_engine": KV_BLOCKS,
            "prefix_caching": True,
            "rates_rps": rates,
            "arrival_window_s": window,
            "workload": WORKLOAD,
            "gateway": {"load_interval_s": 0.1, "affinity_max_load_gap": 0.25, "affinity_prefix_bytes": 2048},
        },
        "results": [],
    }
    ceiling = hit_ceiling()
    data["hit_rate_ceiling"] = ceiling
    console.print(
        f"[bold]affinity[/]: {ENGINES} simulated {PROFILE} engines with prefix caching, KV {KV_BLOCKS} blocks each; "
        f"{WORKLOAD['groups']} groups x {WORKLOAD['prefix_len']}-word system prompts, "
        f"{', '.join(f'{r:g}' for r in rates)} req/s for {window:g} s each"
    )
    for rate in rates:
        for c in CONFIGS:
            t0 = time.monotonic()
            r = run_config(stack, c, rate, window)
            data["results"].append(r)
            s = r["summary"]
            console.print(
                f"  {rate:g} req/s, {c['name']}: {s['completed']}/{s['requests']} ok, "
                f"{time.monotonic() - t0:.0f}s, cpu {r['cpu_cores']}"
            )
    stack.stop_all()
    cols, table_rows = rows(data["results"])
    caption = (
        f"cache hit rate = prefix-cache hit tokens / queried prompt tokens over all engines (their /metrics); "
        f"at most {ceiling:.1%} (every shared system prompt cached everywhere, user turns never). "
        "requests per engine = requests each engine finished; max/mean = the busiest engine's share vs an even split."
    )
    console.print(rich_table("Prefix affinity vs round-robin and least-loaded", cols, table_rows, caption))
    md = header("affinity: round-robin vs least-loaded vs load-gated prefix affinity", data)
    md += (
        f"{ENGINES} simulated `{PROFILE}` engines (`--prefix-caching`, `--kv-blocks {KV_BLOCKS}`, "
        f"`--max-num-seqs {ENGINE_SEQS}`) behind the gateway (load_interval_s 0.1); workload `prefix`: "
        f"{WORKLOAD['groups']} groups, {WORKLOAD['prefix_len']}-word shared system prompt, "
        f"{WORKLOAD['input']['mean']}-word user turn, {WORKLOAD['output']['mean']} output tokens, Poisson arrivals at "
        f"{' and '.join(f'{r:g}' for r in rates)} req/s for {window:g} s (seed {WORKLOAD['seed']}). "
        "Every config starts with cold caches.\n\n"
    )
    md += md_table(cols, table_rows) + "\n" + caption + "\n"
    j, m = write_results("affinity", data, md, quick=args.quick)
    console.print(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    main_guard(main)
