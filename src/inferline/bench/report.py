"""Report a benchmark: the rich summary tables, warnings about the measurement, and the JSON file."""

from __future__ import annotations

import asyncio
import math
import os
import platform
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, Group
from rich.table import Table

import inferline
from inferline.bench.config import BenchConfig
from inferline.bench.record import RequestRecord
from inferline.bench.runner import BenchResult, RunResult

SEND_LAG_WARN_MS = 10.0  # open loop: p99 of (actual send - scheduled send) above this = generator behind
CPU_WARN_RATIO = 0.85  # generator process CPU / wall time above this = it is close to saturation
_LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2e_ms"))
_COLS = ("mean", "p50", "p90", "p95", "p99", "max", "count")
_PACKAGES = ("aiohttp", "orjson", "numpy", "pydantic", "uvloop", "matplotlib", "rich", "typer")


def machine_info() -> dict[str, Any]:
    """Where and with what the benchmark ran: host, CPU, memory, Python and package versions."""
    versions = {"inferline": inferline.__version__, "python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    try:
        loop = type(asyncio.get_running_loop()).__module__
    except RuntimeError:
        loop = None
    return {
        "machine": {
            "hostname": platform.node(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
            "cpu_count": os.cpu_count(),
            "memory_total_kb": _int_or_none(_proc_field("/proc/meminfo", "MemTotal")),
            "python_implementation": platform.python_implementation(),
            "event_loop": loop,
            "argv": _scrub(sys.argv),
        },
        "versions": versions,
    }


def _scrub(argv: list[str]) -> list[str]:
    """argv with the value of --api-key hidden."""
    out: list[str] = []
    hide = False
    for a in argv:
        if hide:
            out.append("***")
            hide = False
        elif a.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(a)
            hide = a == "--api-key"
    return out


def load_json(path: Path) -> BenchResult:
    """A results file back into a BenchResult (per-request timelines only if saved with them)."""
    data = orjson.loads(path.read_bytes())
    cfg = dict(data["config"])
    cfg.pop("api_key_set", None)
    cfg["rates"] = [math.inf if r == "inf" else r for r in cfg.get("rates", [])]
    config = BenchConfig.model_validate(cfg)
    runs = []
    for r in data["runs"]:
        rate = math.inf if r["rate_rps"] == "inf" else r["rate_rps"]
        records = [RequestRecord.from_json(x) for x in r.get("requests", [])]
        run = RunResult(rate, r["concurrency"], config.burstiness, records, r["summary"])
        run.deadline_hit, run.interrupted = r.get("deadline_hit", False), r.get("interrupted", False)
        runs.append(run)
    meta = {k: data[k] for k in ("machine", "versions") if k in data}
    started = datetime.fromisoformat(data["started_at"])
    finished = datetime.fromisoformat(data.get("finished_at", data["started_at"]))
    return BenchResult(config, data.get("model", "?"), runs, started, finished, meta)


def _proc_field(path: str, key: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


def write_json(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def warnings(run: RunResult) -> list[str]:
    """What a reader must know before trusting the numbers of this run."""
    s = run.summary
    out: list[str] = []
    lag = s["send_lag_ms"].get("p99")
    if run.rate_rps is not None and not run.concurrency and lag is not None and lag > SEND_LAG_WARN_MS:
        out.append(f"the generator fell behind its schedule (send lag p99 {lag:.1f} ms): lower the rate")
    cpu = s.get("generator_cpu_ratio")
    if cpu is not None and cpu > CPU_WARN_RATIO:
        out.append(f"the generator used {cpu:.0%} of a core: latencies include client-side queueing")
    ratio = s.get("usage_reported_ratio")
    if ratio is not None and ratio < 1:
        out.append(f"usage missing on {1 - ratio:.0%} of requests: their output tokens = content chunks")
    if s["cancelled"]:
        why = "at Ctrl-C" if run.interrupted else "at the hard deadline (--duration + --grace)"
        out.append(f"{s['cancelled']} requests still running {why} were cancelled")
    return out


def _ms(v: Any) -> str:
    if isinstance(v, int):
        return str(v)
    return "-" if v is None else f"{v:,.1f}"


def _ms0(v: Any) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _rate(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:,.2f}{unit}"


def run_table(run: RunResult, model: str) -> Group:
    """One run: requests, errors and throughput, then the latency distributions."""
    s = run.summary
    totals = Table(title=f"{run.label} - {model}", title_justify="left", show_header=False, box=None)
    totals.add_column(style="bold")
    totals.add_column()
    sent = f"{s['completed']} ok / {s['requests']} sent"
    errs = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none"
    rows = [
        ("requests", f"{sent} ({s['failed']} failed, {s['cancelled']} cancelled)"),
        ("errors", errs),
        ("duration", f"{s['duration_s']:.2f} s"),
        ("request throughput", _rate(s["request_throughput_rps"], " req/s")),
        ("output token throughput", _rate(s["output_throughput_tps"], " tok/s")),
        ("total token throughput", _rate(s["total_token_throughput_tps"], " tok/s")),
        ("mean requests in flight", _rate(s["mean_in_flight"])),
    ]
    if "goodput_rps" in s:
        slo = ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in s["slo"].items())
        met = _rate((s["slo_attainment_ratio"] or 0) * 100, "%")
        rows.append(("goodput", f"{_rate(s['goodput_rps'], ' req/s')} ({met} of requests met {slo})"))
    for name, value in rows:
        totals.add_row(name, value)
    lat = Table(header_style="bold")
    lat.add_column("latency (ms)")
    for col in _COLS:
        lat.add_column(col, justify="right")
    for name, key in _LATENCIES:
        d = s[key]
        lat.add_row(name, *(_ms(d.get(c)) for c in _COLS))
    return Group(totals, lat)


def sweep_table(runs: list[RunResult], model: str) -> Table:
    """One row a run: how throughput and latency move with the load."""
    t = Table(title=f"sweep - {model}", title_justify="left", header_style="bold")
    by_rate = runs[0].rate_rps is not None
    cols = ("rate" if by_rate else "users", "ok", "err", "req/s", "tok/s", "goodput", "TTFT p50", "TTFT p99")
    for col in (*cols, "TPOT p50", "TPOT p99", "E2E p99"):
        t.add_column(col, justify="right")
    for r in runs:
        s = r.summary
        x = r.rate_rps if by_rate else r.concurrency
        t.add_row(
            f"{x:g}" if x is not None else "-",
            str(s["completed"]),
            str(s["requests"] - s["completed"]),
            _rate(s["request_throughput_rps"]),
            _ms0(s["output_throughput_tps"]),
            _rate(s.get("goodput_rps")),
            _ms0(s["ttft_ms"]["p50"]),
            _ms0(s["ttft_ms"]["p99"]),
            _ms0(s["tpot_ms"]["p50"]),
            _ms0(s["tpot_ms"]["p99"]),
            _ms0(s["e2e_ms"]["p99"]),
        )
    t.caption = "rate and req/s: requests/s; tok/s: output tokens/s; latencies in ms"
    return t


def print_report(result: BenchResult, console: Console) -> None:
    for run in result.runs:
        console.print(run_table(run, result.model))
        by_class = run.summary.get("by_class")
        if by_class:
            for cls, sub in by_class.items():
                ttft, e2e = sub["ttft_ms"], sub["e2e_ms"]
                console.print(
                    f"  [bold]{cls}[/]: {sub['completed']}/{sub['requests']} ok, TTFT p50 {_ms(ttft['p50'])} "
                    f"p99 {_ms(ttft['p99'])} ms, E2E p50 {_ms(e2e['p50'])} p99 {_ms(e2e['p99'])} ms"
                )
        for w in warnings(run):
            console.print(f"[yellow]warning:[/] {w}")
    if len(result.runs) > 1:
        console.print(sweep_table(result.runs, result.model))
