"""The gateway's KV-fragmentation estimate against the simulator's truth, under workloads that fragment.

A simulated engine (h100-llama8b profile, KV cache cut small) serves streamed completions from a client
that keeps exactly what a gateway knows of its requests: dispatch order, prompt tokens (token-id
prompts, so the count is exact, as vLLM's /tokenize gives it), tokens relayed so far, and the shared
prompt prefix of each. Every SAMPLE_S the engine's /metrics is scraped (vllm:kv_cache_usage_perc,
vllm:num_requests_running, vllm:cache_config_info, and the simulator-only truth
inferline_sim_kv_cache_fragmentation_ratio); the estimator (inferline.observe.fragmentation) is fed the
reading and the client's view at that instant, as the gateway's pool does after each load poll.

Scenarios:
  mixed lengths    prompts 8-1500 tokens, outputs 4-128: the usual case, little waste
  short requests   prompts 1-12 tokens, outputs 1-8, many at once: last-block waste dominates
  preemption       long outputs on a cache too small for them: vLLM preempts (recompute)
  prefix sharing   prefix caching on, 4 groups with a 200-token shared prompt + a unique part

The engine runs in its own process (`inferline sim`), so the reading and the client's view are taken on
different clocks, as in the gateway (--in-process: one event loop, no skew: the model's error alone).
Figures are in percentage points of the KV capacity (the ratio x 100). Columns: mean truth, mean
estimate, mean and p95 absolute error, and two ablations: the estimate without the engine's running
count (all our in-flight sequences taken as holding KV), and without prefix keys (sharing unknown).

    .venv/bin/python benchmarks/fragmentation.py [--quick] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inferline.backends.prom_text import info_labels
from inferline.observe.fragmentation import InFlightSequence, KvReading, estimate_fragmentation
from inferline.sim import SimFleet

SAMPLE_S = 0.025


@dataclass(frozen=True)
class Scenario:
    name: str
    kv_blocks: int
    max_num_seqs: int
    concurrency: int
    prompts: tuple[int, ...]  # prompt lengths, drawn uniformly
    outputs: tuple[int, ...]  # output lengths, drawn uniformly
    prefix_caching: bool = False
    groups: int = 0
    prefix_tokens: int = 0


SCENARIOS = [
    Scenario("mixed lengths", 1024, 64, 48, (8, 24, 100, 400, 1500), (4, 32, 128)),
    Scenario("short requests", 96, 128, 96, (1, 3, 5, 8, 12), (1, 2, 4, 8)),
    Scenario("preemption", 160, 32, 24, (40, 80, 160), (200, 400)),
    Scenario("prefix sharing", 512, 48, 32, (260, 300, 400), (8, 32, 64), True, 4, 200),
]


@dataclass
class Track:
    order: int
    prompt: int
    generated: int = 0
    prefix_key: int | None = None
    prefix_tokens: int = 0


@dataclass
class View:
    """What the gateway knows of its requests in flight on the engine."""

    tracks: dict[int, Track] = field(default_factory=dict)
    seq: int = 0

    def sequences(self, prefixes: bool = True) -> list[InFlightSequence]:
        out = []
        for t in sorted(self.tracks.values(), key=lambda t: t.order):
            key = t.prefix_key if prefixes else None
            out.append(
                InFlightSequence(t.prompt + t.generated, key, t.prefix_tokens if prefixes else 0, t.generated > 0)
            )
        return out


@dataclass
class Sample:
    truth: float
    estimate: float | None
    no_running: float | None
    no_prefix: float | None
    usage: float
    running: int


def _parse(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name == "vllm:cache_config_info":
            labels = info_labels(line, name)
            out["block_size"] = int(labels["block_size"])
            out["blocks"] = int(labels["num_gpu_blocks"])
        elif name in (
            "vllm:kv_cache_usage_perc",
            "vllm:num_requests_running",
            "inferline_sim_kv_cache_fragmentation_ratio",
        ):
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


async def _client(
    http: aiohttp.ClientSession,
    url: str,
    sc: Scenario,
    prefixes: list[list[int]],
    view: View,
    rng: random.Random,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        n_prompt = rng.choice(sc.prompts)
        n_out = rng.choice(sc.outputs)
        key = None
        if sc.groups:
            key = rng.randrange(sc.groups)
            ids = prefixes[key] + [rng.randrange(1000, 30000) for _ in range(n_prompt - sc.prefix_tokens)]
        else:
            ids = [rng.randrange(1000, 30000) for _ in range(n_prompt)]
        body = {"model": "smollm2", "prompt": ids, "max_tokens": n_out, "ignore_eos": True, "stream": True}
        view.seq += 1
        rid = view.seq
        view.tracks[rid] = Track(rid, n_prompt, 0, key, sc.prefix_tokens if key is not None else 0)
        try:
            async with http.post(url + "/v1/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                async for line in resp.content:
                    if line.startswith(b"data: {") and b'"text"' in line:
                        view.tracks[rid].generated += 1
        finally:
            del view.tracks[rid]


def sim_args(sc: Scenario, seed: int = 0) -> list[str]:
    """`inferline sim` options for SC's engine."""
    args = ["--profile", "h100-llama8b", "--kv-blocks", str(sc.kv_blocks), "--max-num-seqs", str(sc.max_num_seqs)]
    return [*args, "--seed", str(seed), *(["--prefix-caching"] if sc.prefix_caching else [])]


async def run_scenario(
    sc: Scenario, seconds: float, seed: int = 0, url: str | None = None, min_samples: int = 0
) -> list[Sample]:
    """Run SC for SECONDS of load; one Sample per scrape while the engine holds KV.

    MIN_SAMPLES: keep going past SECONDS (up to 20 x SECONDS) until that many samples are in (a busy
    machine drives the engine slower, and short requests leave the cache empty between scrapes).

    URL: an engine started with sim_args(SC) in another process (the gateway's situation: its view and the
    engine's reading are taken on different clocks); None runs the engine in this process and loop.
    """
    if url is None:
        async with SimFleet(
            "h100-llama8b",
            kv_blocks=sc.kv_blocks,
            max_num_seqs=sc.max_num_seqs,
            prefix_caching=sc.prefix_caching,
            seed=seed,
        ) as fleet:
            return await run_scenario(sc, seconds, seed, fleet.urls[0], min_samples)
    samples: list[Sample] = []
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=120), connector=aiohttp.TCPConnector(limit=0)
    ) as http:
        view, stop = View(), asyncio.Event()
        rng = random.Random(seed)
        prefixes = [[rng.randrange(1000, 30000) for _ in range(sc.prefix_tokens)] for _ in range(sc.groups)]
        clients = [
            asyncio.create_task(_client(http, url, sc, prefixes, view, random.Random(rng.random()), stop))
            for _ in range(sc.concurrency)
        ]
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds or (
            len(samples) < min_samples and elapsed < 20 * seconds
        ):
            await asyncio.sleep(SAMPLE_S)
            async with http.get(url + "/metrics") as resp:
                m = _parse(await resp.text())
            # The client's view right after the reading, as the pool's poll would take it.
            capacity = m["blocks"] * m["block_size"]
            usage, running = m["vllm:kv_cache_usage_perc"], int(m["vllm:num_requests_running"])
            if usage <= 0:
                continue
            reading = KvReading(usage, capacity, m["block_size"], running)
            samples.append(
                Sample(
                    truth=m["inferline_sim_kv_cache_fragmentation_ratio"],
                    estimate=estimate_fragmentation(reading, view.sequences()),
                    no_running=estimate_fragmentation(replace(reading, running=None), view.sequences()),
                    no_prefix=estimate_fragmentation(reading, view.sequences(prefixes=False)),
                    usage=usage,
                    running=running,
                )
            )
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
    return samples


def summarize(sc: Scenario, samples: list[Sample]) -> dict[str, Any]:
    def pp(x: float) -> float:
        return round(100 * x, 2)

    def errors(attr: str) -> list[float]:
        return [abs(getattr(s, attr) - s.truth) for s in samples if getattr(s, attr) is not None]

    err = errors("estimate")
    q95 = sorted(err)[int(0.95 * (len(err) - 1))] if err else None
    return {
        "scenario": sc.name,
        "samples": len(samples),
        "unknown": sum(1 for s in samples if s.estimate is None),
        "kv_use_mean_pp": pp(statistics.fmean(s.usage for s in samples)) if samples else None,
        "truth_mean_pp": pp(statistics.fmean(s.truth for s in samples)) if samples else None,
        "estimate_mean_pp": pp(statistics.fmean(s.estimate for s in samples if s.estimate is not None))
        if err
        else None,
        "mae_pp": pp(statistics.fmean(err)) if err else None,
        "p95_ae_pp": pp(q95) if q95 is not None else None,
        "mae_without_running_pp": pp(statistics.fmean(errors("no_running"))) if errors("no_running") else None,
        "mae_without_prefix_keys_pp": pp(statistics.fmean(errors("no_prefix")))
        if sc.prefix_caching and errors("no_prefix")
        else None,
    }


COLUMNS = [
    ("scenario", "scenario"),
    ("samples", "samples"),
    ("kv_use_mean_pp", "KV use %"),
    ("truth_mean_pp", "truth %"),
    ("estimate_mean_pp", "estimate %"),
    ("mae_pp", "MAE pp"),
    ("p95_ae_pp", "p95 AE pp"),
    ("mae_without_running_pp", "MAE w/o running pp"),
    ("mae_without_prefix_keys_pp", "MAE w/o prefix keys pp"),
]


@contextlib.contextmanager
def sim_process(args: list[str]) -> Iterator[str]:
    """`inferline sim ARGS` on a free port in its own process; yields its URL, stops it after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = str(Path(sys.executable).parent / "inferline")
    proc = subprocess.Popen([exe, "sim", "--port", str(port), *args], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"inferline sim did not answer on {url}")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    from _harness import git_commit, machine, md_table, now_iso, write_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="3 s per scenario instead of 15 (writes results/fragmentation.quick.*)"
    )
    ap.add_argument("--seconds", type=float, default=None, help="seconds of load per scenario")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="run the engine on this process's event loop (no clock skew between reading and view)",
    )
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    started = time.monotonic()
    info = {"date": now_iso(), "commit": git_commit(), "machine": machine(), "seconds_per_scenario": seconds}
    rows = []
    for sc in SCENARIOS:
        if args.in_process:
            samples = asyncio.run(run_scenario(sc, seconds))
        else:
            with sim_process(sim_args(sc)) as url:
                samples = asyncio.run(run_scenario(sc, seconds, url=url))
        summary = summarize(sc, samples)
        rows.append(summary)
        print(" | ".join(f"{label} {summary[key]}" for key, label in COLUMNS), flush=True)
    table = md_table([label for _, label in COLUMNS], [[r[key] for key, _ in COLUMNS] for r in rows])
    print(table)
    info["rows"] = rows
    info["wall_s"] = round(time.monotonic() - started, 1)
    md = (
        "# KV fragmentation: gateway estimate vs simulator truth\n\n"
        f"{info['date']}, commit {info['commit']}, {seconds:g} s per scenario, load average at start "
        f"{info['machine']['loadavg_at_start']}.\n\n{table}\n"
    )
    write_results("fragmentation", info, md, quick=args.quick)


if __name__ == "__main__":
    main()
