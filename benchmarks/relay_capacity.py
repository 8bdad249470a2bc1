"""Relay capacity: SSE chunks per second one gateway process relays, with its token accounting.

    .venv/bin/python benchmarks/relay_capacity.py [--quick]

Many concurrent long streams (closed loop: 64 users, each asking for 2000 tokens with ignore_eos, then
asking again) from one `inferline sim --profile instant` engine (tokens as fast as it can send them),
(a) direct and (b) through `inferline serve` (one `kind: vllm` backend; every chunk is parsed for
accounting: first token, ITL histogram, finish reason, usage). Direct and gateway runs alternate,
`--rounds` times; full mode also runs 16 and 256 streams.

Reported per path: content chunks/s received by the client in the steady window (from 1 s after the
start to the end of the window; streams still open at the end are cut, which is expected here), and
the CPU of the gateway, the sim and the load generator (CPU s / wall s, from /proc). The gateway's CPU
microseconds per relayed chunk is the machine-independent number: 1e6 / it is the chunk rate one
free core could relay. All three processes share the machine's cores, so the chunk rate through the
gateway is bounded by whichever saturates first (see the CPU columns).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

NAME = "relay_capacity"
OUTPUT_LEN = 2000
INPUT_LEN = 16
WARM_S = 1.0  # chunks before this are not counted (connections opening, first requests)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (< 2 min): 64 streams, one round, short window")
    ap.add_argument("--streams", default=None, help="concurrent streams, comma list (default 16,64,256; quick 64)")
    ap.add_argument("--rounds", type=int, default=None, help="direct/gateway alternations (default 2; quick 1)")
    ap.add_argument("--duration", type=float, default=None, help="window per run, s (default 10; quick 5)")
    ap.add_argument("--budget", type=float, default=None, help="hard wall-clock limit, s (default 480; quick 115)")
    return ap.parse_args()


def one_run(url: str, procs_all: list[h.Proc], streams: int, duration: float) -> dict[str, Any]:
    m = h.bench(
        url,
        procs_all,
        concurrency=(streams,),
        duration_s=duration,
        grace_s=0.0,  # cut open streams at the end of the window: we count chunks, not requests
        request_timeout_s=120.0,
        input={"mean": INPUT_LEN},
        output={"mean": OUTPUT_LEN},
        ignore_eos=True,
    )
    in_window = sum(1 for r in m.records for t in r.chunk_s if WARM_S <= t <= duration)
    window = duration - WARM_S
    chunks_per_s = in_window / window
    s = m.summary
    completed = s["completed"]
    out = {
        "streams": streams,
        "window_s": window,
        "chunks_in_window": in_window,
        "chunks_per_s": round(chunks_per_s, 1),
        "completed_requests": completed,
        "cut_at_window_end": s["cancelled"],
        "other_errors": {k: v for k, v in s["errors"].items() if k != "cancelled"},
        "itl_ms": {q: h.pct(s, "itl_ms", q) for q in ("p50", "p99")},
        "cpu_ratio": m.cpu,
        "cpu_s": m.cpu_s,
        "wall_s": round(m.wall_s, 2),
        "loadavg_1m": m.loadavg[0] if m.loadavg else None,
    }
    all_chunks = sum(len(r.chunk_s) for r in m.records)
    out["cpu_us_per_chunk"] = {k: round(v / all_chunks * 1e6, 2) if all_chunks else None for k, v in m.cpu_s.items()}
    h.settle(procs_all, max_s=10)
    return out


def main() -> int:
    args = parse_args()
    quick = args.quick
    streams_list = [int(x) for x in (args.streams or ("64" if quick else "16,64,256")).split(",")]
    rounds = args.rounds or (1 if quick else 2)
    duration = args.duration or (5.0 if quick else 10.0)
    procs = h.Stack(args.budget or (115.0 if quick else 480.0))
    data: dict[str, Any] = {
        "benchmark": NAME,
        "date": h.now_iso(),
        "mode": "quick" if quick else "full",
        "machine": h.machine(),
        "workload": {
            "engine": "inferline sim --profile instant, max_num_seqs 4096",
            "requests": f"chat, stream, prompt ~{INPUT_LEN} tokens, {OUTPUT_LEN} output tokens (ignore_eos), usage on",
            "load": "closed loop: N users, each sends its next request when its stream ends",
            "window_s": duration,
            "counted_from_s": WARM_S,
            "rounds": rounds,
        },
    }
    t0 = time.monotonic()
    sim = procs.sim(max_num_seqs=4096)[0]
    gw = procs.gateway(
        "inferline", h.gateway_config([{"name": "sim0", "kind": "vllm", "url": sim.url, "max_num_seqs": 4096}])
    )
    procs_all = [sim, gw]
    paths = {"direct": sim.url, "inferline": gw.url}
    h.bench(gw.url, procs_all, concurrency=(8,), num_requests=16, output={"mean": 64}, input={"mean": 16})
    runs: list[dict[str, Any]] = []
    for streams in streams_list:
        for rnd in range(rounds):
            order = list(paths) if rnd % 2 == 0 else list(reversed(paths))
            for name in order:
                r = one_run(paths[name], procs_all, streams, duration)
                r["path"], r["round"] = name, rnd + 1
                runs.append(r)
                h.console.print(
                    f"{streams:4d} streams {name:9s} round {rnd + 1}: {r['chunks_per_s']:9,.0f} chunks/s  "
                    f"CPU {r['cpu_ratio']}  gateway us/chunk {r['cpu_us_per_chunk'].get('inferline')}  "
                    f"load {r['loadavg_1m']}"
                )
    data["runs"] = runs
    data["summary"] = summarize(runs, streams_list)
    data["wall_s"] = round(time.monotonic() - t0, 1)
    data["machine"]["loadavg_at_end"] = h.loadavg()
    procs.stop_all()
    md = render(data)
    j, m = h.write_results(NAME, data, md, quick=quick)
    h.console.print(f"wrote {j.relative_to(h.REPO)} and {m.relative_to(h.REPO)} in {data['wall_s']} s")
    return 0


def _median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def summarize(runs: list[dict[str, Any]], streams_list: list[int]) -> list[dict[str, Any]]:
    rows = []
    for streams in streams_list:
        d = [r for r in runs if r["streams"] == streams and r["path"] == "direct"]
        g = [r for r in runs if r["streams"] == streams and r["path"] == "inferline"]
        dc = _median([r["chunks_per_s"] for r in d])
        gc = _median([r["chunks_per_s"] for r in g])
        gw_us = _median([r["cpu_us_per_chunk"].get("inferline") for r in g])
        rows.append(
            {
                "streams": streams,
                "direct_chunks_per_s": dc,
                "gateway_chunks_per_s": gc,
                "gateway_vs_direct": round(gc / dc, 3) if dc and gc else None,
                "gateway_cpu_ratio": _median([r["cpu_ratio"].get("inferline") for r in g]),
                "gateway_cpu_us_per_chunk": gw_us,
                "gateway_one_core_chunks_per_s": round(1e6 / gw_us) if gw_us else None,
                "sim_cpu_ratio_direct": _median([r["cpu_ratio"].get("sim") for r in d]),
                "sim_cpu_ratio_via_gateway": _median([r["cpu_ratio"].get("sim") for r in g]),
                "loadgen_cpu_ratio_direct": _median([r["cpu_ratio"].get("loadgen") for r in d]),
                "loadgen_cpu_ratio_via_gateway": _median([r["cpu_ratio"].get("loadgen") for r in g]),
                "loadgen_cpu_us_per_chunk": _median([r["cpu_us_per_chunk"].get("loadgen") for r in d + g]),
                "itl_p99_ms_direct": _median([r["itl_ms"]["p99"] for r in d]),
                "itl_p99_ms_via_gateway": _median([r["itl_ms"]["p99"] for r in g]),
                "other_errors": [r["other_errors"] for r in d + g if r["other_errors"]],
            }
        )
    return rows


def render(data: dict[str, Any]) -> str:
    cols = [
        "streams",
        "direct chunks/s",
        "via inferline chunks/s",
        "ratio",
        "gateway CPU",
        "gateway µs/chunk",
        "1-core ceiling chunks/s",
        "sim CPU (direct / via gw)",
        "loadgen CPU (direct / via gw)",
        "ITL p99 ms (direct / via gw)",
    ]
    rows = []
    for s in data["summary"]:
        rows.append(
            [
                s["streams"],
                s["direct_chunks_per_s"],
                s["gateway_chunks_per_s"],
                s["gateway_vs_direct"],
                f"{s['gateway_cpu_ratio']:.0%}" if s["gateway_cpu_ratio"] is not None else None,
                s["gateway_cpu_us_per_chunk"],
                s["gateway_one_core_chunks_per_s"],
                f"{_p(s['sim_cpu_ratio_direct'])} / {_p(s['sim_cpu_ratio_via_gateway'])}",
                f"{_p(s['loadgen_cpu_ratio_direct'])} / {_p(s['loadgen_cpu_ratio_via_gateway'])}",
                f"{h.fmt(s['itl_p99_ms_direct'])} / {h.fmt(s['itl_p99_ms_via_gateway'])}",
            ]
        )
    caption = (
        "medians over rounds; chunks/s = content chunks received by the client in the steady window; CPU = CPU s / "
        "wall s (1.0 = one core); µs/chunk = gateway CPU time / chunks relayed; 1-core ceiling = 1e6 / µs/chunk"
    )
    h.console.print(h.rich_table(f"SSE relay capacity ({OUTPUT_LEN}-token streams, instant sim)", cols, rows, caption))
    md = h.header("Relay capacity: SSE chunks/s through one gateway process", data)
    md += (
        f"Engine: `inferline sim --profile instant`; load: {data['workload']['load']}; "
        f"{data['workload']['requests']}; {data['workload']['window_s']:g} s windows counted from "
        f"{data['workload']['counted_from_s']:g} s; {data['workload']['rounds']} round(s), direct and gateway "
        "alternating. Client, sim and gateway share the machine's cores.\n\n"
    )
    md += h.md_table(cols, rows) + "\n" + caption + ".\n"
    return md


def _p(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


if __name__ == "__main__":
    h.main_guard(main)
