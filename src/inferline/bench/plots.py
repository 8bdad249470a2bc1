"""PNG plots of a benchmark (matplotlib, Agg, no pyplot state): latency CDFs, time series, sweep curves."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inferline.bench.metrics import SLO, e2e_s, timeseries, tpot_s, ttft_s
from inferline.bench.runner import BenchResult, RunResult

DPI = 110


def write_plots(result: BenchResult, directory: Path, bin_s: float | None = None) -> list[Path]:
    """Write every plot for the result into `directory`; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    runs = [r for r in result.runs if r.records]
    if not runs:
        return []
    slo = result.config.slo
    paths = [latency_cdf(runs, directory / "latency_cdf.png", result.model, slo)]
    for i, run in enumerate(runs):
        name = "over_time.png" if len(runs) == 1 else f"over_time_{i + 1:02d}_{_slug(run.label)}.png"
        paths.append(over_time(run, directory / name, result.model, bin_s, slo))
    if len(runs) > 1:
        paths.append(sweep(runs, directory / "sweep.png", result.model))
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def _cdf(ax: Axes, values: list[float], label: str) -> None:
    xs = np.sort(np.asarray(values))
    ys = np.arange(1, xs.size + 1) / xs.size
    ax.step(xs, ys, where="post", label=f"{label} (n={xs.size})", linewidth=1.6)


def latency_cdf(runs: list[RunResult], path: Path, model: str, slo: SLO | None = None) -> Path:
    """TTFT, TPOT and E2E CDFs of successful requests, one line per run."""
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    specs = (
        ("Time to first token (TTFT)", "TTFT (ms)", ttft_s, slo.ttft_ms if slo else None),
        ("Time per output token (TPOT)", "TPOT (ms)", tpot_s, slo.tpot_ms if slo else None),
        ("End-to-end latency (E2E)", "E2E (ms)", e2e_s, slo.e2e_ms if slo else None),
    )
    for ax, (title, xlabel, fn, limit) in zip(axes, specs, strict=True):
        drawn = 0
        for run in runs:
            vals = [v * 1000.0 for r in run.records if r.ok and (v := fn(r)) is not None and not math.isnan(v)]
            if vals:
                _cdf(ax, vals, run.label)
                drawn += 1
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of requests")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        for q in (0.5, 0.99):
            ax.axhline(q, color="grey", linewidth=0.6, linestyle=":")
        if limit is not None:
            ax.axvline(limit, color="red", linestyle="--", linewidth=1, label=f"SLO {limit:g} ms")
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(fontsize="small", loc="lower right")
        else:
            ax.text(0.5, 0.5, "no data: no successful requests", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"Latency CDFs - {model} (dotted lines: p50, p99)")
    return _save(fig, path)


def over_time(run: RunResult, path: Path, model: str, bin_s: float | None = None, slo: SLO | None = None) -> Path:
    """TTFT of each request at its send time, and throughput per time bin, over the run."""
    recs = run.records
    ok = [r for r in recs if r.ok]
    span = max((r.end_s for r in recs if not math.isnan(r.end_s)), default=1.0)
    bin_s = bin_s or _nice_bin(span, len(ok))
    fig = Figure(figsize=(12, 7.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    sends = np.array([r.send_s for r in ok])
    ttfts = np.array([ttft_s(r) * 1000.0 for r in ok])
    top.scatter(sends, ttfts, s=8, alpha=0.5, label="TTFT of a request")
    if ok:
        bins = (sends / bin_s).astype(np.int64)
        xs = [(b + 0.5) * bin_s for b in np.unique(bins)]
        med = [float(np.median(ttfts[bins == b])) for b in np.unique(bins)]
        top.plot(xs, med, color="tab:orange", linewidth=1.8, label=f"median TTFT per {bin_s:g} s")
    failed = [r.send_s for r in recs if not r.ok and not math.isnan(r.send_s)]
    if failed:
        top.scatter(failed, [0.0] * len(failed), marker="x", color="red", s=24, label="failed request (at send)")
    if slo is not None and slo.ttft_ms is not None:
        top.axhline(slo.ttft_ms, color="red", linestyle="--", linewidth=1, label=f"TTFT SLO {slo.ttft_ms:g} ms")
    top.set_ylabel("TTFT (ms)")
    top.set_title("TTFT by request send time")
    top.set_ylim(bottom=0)
    top.grid(True, alpha=0.3)
    top.legend(fontsize="small", loc="upper left")
    top.tick_params(labelbottom=True)
    ts = timeseries(recs, bin_s)
    t = ts["t_s"]
    bottom.plot(t, ts["output_tps"], color="tab:blue", marker=".", label="output tokens/s")
    bottom.set_ylabel("output tokens / s", color="tab:blue")
    bottom.set_xlabel("time since start of run (s)")
    bottom.set_title(f"Throughput over time ({bin_s:g} s bins)")
    bottom.grid(True, alpha=0.3)
    right = bottom.twinx()
    right.plot(t, ts["completed_rps"], color="tab:green", marker=".", label="completed req/s")
    if any(ts["errors_rps"]):
        right.plot(t, ts["errors_rps"], color="tab:red", marker=".", label="failed req/s")
    right.set_ylabel("requests / s")
    right.set_ylim(bottom=0)
    bottom.set_ylim(bottom=0)
    lines = bottom.get_lines() + right.get_lines()
    bottom.legend(lines, [str(ln.get_label()) for ln in lines], fontsize="small", loc="upper left")
    fig.suptitle(f"{run.label} - {model}")
    return _save(fig, path)


def _nice_bin(span_s: float, completed: int) -> float:
    """40 bins over the run, or fewer (at least 10) so a bin holds ~10 completions; 1/2/5 x 10^k s."""
    raw = max(min(max(span_s / 40.0, 10.0 * span_s / max(completed, 1)), span_s / 10.0), 0.01)
    k = 10 ** math.floor(math.log10(raw))
    return float(next(m * k for m in (1, 2, 5, 10) if m * k >= raw))


def sweep(runs: list[RunResult], path: Path, model: str) -> Path:
    """Achieved throughput and latency percentiles against the offered load."""
    by_rate = runs[0].rate_rps is not None
    xs = [(r.rate_rps if by_rate else r.concurrency) or 0.0 for r in runs]
    finite = [x for x in xs if not math.isinf(x)]
    inf_x = (max(finite) * 2 if finite else 1.0) if any(math.isinf(x) for x in xs) else None
    xs = [inf_x if math.isinf(x) and inf_x is not None else x for x in xs]
    xlabel = "offered rate (req/s)" if by_rate else "concurrency (users)"
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    ax_tp, ax_lat, ax_tok = fig.subplots(1, 3)

    def series(key: str, stat: str | None = None) -> list[float]:
        out = []
        for r in runs:
            v: Any = r.summary.get(key)
            if stat is not None:
                v = (v or {}).get(stat)
            out.append(math.nan if v is None else float(v))
        return out

    ax_tp.plot(xs, series("request_throughput_rps"), "o-", color="tab:blue", label="completed req/s")
    if "goodput_rps" in runs[0].summary:
        ax_tp.plot(xs, series("goodput_rps"), "s--", color="tab:green", label="goodput req/s (met SLOs)")
    if by_rate and finite:
        ax_tp.plot(finite, finite, color="grey", linestyle=":", label="offered")
    ax_tp.set_ylabel("requests / s")
    ax_tp.set_title("Request throughput")
    tok = ax_tp.twinx()
    tok.plot(xs, series("output_throughput_tps"), "^-", color="tab:purple", label="output tok/s")
    tok.set_ylabel("output tokens / s", color="tab:purple")
    handles = ax_tp.get_lines() + tok.get_lines()
    ax_tp.legend(handles, [str(h.get_label()) for h in handles], fontsize="small", loc="upper left")

    for key, name, color in (("ttft_ms", "TTFT", "tab:blue"), ("e2e_ms", "E2E", "tab:green")):
        for stat, style in (("p50", "o-"), ("p99", "s--")):
            ax_lat.plot(xs, series(key, stat), style, color=color, label=f"{name} {stat}")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_title("TTFT and E2E latency")
    ax_lat.legend(fontsize="small")
    for key, name, color in (("tpot_ms", "TPOT", "tab:orange"), ("itl_ms", "ITL", "tab:red")):
        for stat, style in (("p50", "o-"), ("p99", "s--")):
            ax_tok.plot(xs, series(key, stat), style, color=color, label=f"{name} {stat}")
    ax_tok.set_ylabel("per-token latency (ms)")
    ax_tok.set_title("TPOT and ITL")
    ax_tok.legend(fontsize="small")
    for ax in (ax_tp, ax_lat, ax_tok):
        ax.set_xlabel(xlabel + (" (inf plotted at the right end)" if inf_x is not None else ""))
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    tok.set_ylim(bottom=0)
    fig.suptitle(f"Load sweep - {model}")
    return _save(fig, path)
