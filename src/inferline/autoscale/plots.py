"""PNG plots of simulations (matplotlib Agg, no pyplot state): one run over time, and runs side by side."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inferline.autoscale.des import SimRun
from inferline.autoscale.report import ttft_series

__all__ = ["compare_plot", "compare_series_plot", "run_plot", "series", "slug"]

DPI = 110


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "run"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def _minutes(t: np.ndarray) -> np.ndarray:
    return t / 60.0


def _ttft_axis(ax: Axes, run: SimRun, bin_s: float) -> None:
    s = ttft_series(run, bin_s)
    p95 = np.where(np.isinf(s["p95"]), 120.0, s["p95"])  # a bin lost to rejections: drawn at the top
    ax.plot(_minutes(s["t"]), p95 * 1000, label="p95", linewidth=1.6)
    ax.plot(_minutes(s["t"]), s["p50"] * 1000, label="p50", linewidth=1.2, alpha=0.8)


def run_plot(run: SimRun, path: Path, bin_s: float = 30.0) -> Path:
    """Load, replicas desired/Ready, TTFT against the SLO, gateway queue and GPU utilization, over time."""
    tl = run.timeline
    t = _minutes(tl["t"])
    fig = Figure(figsize=(12, 11), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    title = (
        f"{run.autoscaler.name}: {run.autoscaler.describe()}\n"
        f"traffic {run.traffic.source}, profile {run.settings.profile.name}"
    )
    fig.suptitle(title, fontsize=10)

    s = ttft_series(run, bin_s)
    ax = axes[0]
    ax.plot(_minutes(s["t"]), s["rate"], label="arrivals (req/s)", color="tab:blue")
    ax.set_ylabel("requests/s")
    ax.set_title("Load", fontsize=10, loc="left")
    ax2 = ax.twinx()
    ax2.plot(t, tl["in_flight"], label="in flight (engines)", color="tab:gray", linewidth=0.9, alpha=0.7)
    ax2.set_ylabel("in flight")
    _legend(ax, ax2)

    ax = axes[1]
    ax.step(t, tl["desired"], where="post", label="desired (spec.replicas)", color="tab:orange", linewidth=1.6)
    ax.step(t, tl["ready"], where="post", label="Ready", color="tab:green", linewidth=1.6)
    ax.step(
        t, tl["pods"], where="post", label="pods (incl. starting/draining)", color="tab:gray", linewidth=0.9, alpha=0.7
    )
    ax.set_ylabel("replicas")
    ax.set_title("Replicas", fontsize=10, loc="left")
    ax.set_ylim(bottom=0)
    _episodes(ax, run)
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[2]
    _ttft_axis(ax, run, bin_s)
    ax.axhline(run.settings.slo_ttft_s * 1000, color="tab:red", linestyle="--", linewidth=1, label="SLO")
    viol = s["violation"]
    for x, v in zip(_minutes(s["t"]), viol, strict=True):
        if v:
            ax.axvspan(x - bin_s / 120, x + bin_s / 120, color="tab:red", alpha=0.08, linewidth=0)
    ax.set_yscale("log")
    ax.set_ylabel("TTFT (ms)")
    ax.set_title(
        f"TTFT by arrival ({bin_s:g} s bins; rejected requests count as infinitely late)", fontsize=10, loc="left"
    )
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[3]
    ax.plot(t, tl["queue"], label="gateway queue", color="tab:purple")
    ax.set_ylabel("queued requests")
    ax2 = ax.twinx()
    ax2.plot(t, tl["gpu_util"], label="GPU util % (Ready pods)", color="tab:olive", linewidth=0.9, alpha=0.8)
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("GPU util %")
    ax.set_title("Gateway queue and simulated DCGM GPU utilization", fontsize=10, loc="left")
    ax.set_xlabel("simulated time (minutes)")
    _legend(ax, ax2)
    return _save(fig, path)


def _legend(a: Axes, b: Axes) -> None:
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = b.get_legend_handles_labels()
    a.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)


def _episodes(ax: Axes, run: SimRun) -> None:
    for i, e in enumerate(run.episodes):
        if e.decision_s is None:
            continue
        lbl = i == 0
        ax.axvline(e.breach_s / 60, color="tab:red", linestyle=":", linewidth=1, label="breach" if lbl else None)
        ax.axvline(e.decision_s / 60, color="tab:orange", linestyle=":", linewidth=1, label="decision" if lbl else None)
        if e.capacity_s is not None:
            ax.axvline(
                e.capacity_s / 60, color="tab:green", linestyle=":", linewidth=1, label="capacity" if lbl else None
            )


def series(run: SimRun, bin_s: float = 30.0) -> dict[str, Any]:
    """What a comparison plot needs of one run (small, picklable)."""
    s = ttft_series(run, bin_s)
    tl = run.timeline
    return {
        "name": run.autoscaler.name,
        "t": tl["t"],
        "ready": tl["ready"],
        "bin_t": s["t"],
        "rate": s["rate"],
        "p95": s["p95"],
        "slo_s": run.settings.slo_ttft_s,
        "title": f"traffic {run.traffic.source}, profile {run.settings.profile.name}",
    }


def compare_plot(runs: list[SimRun], path: Path, bin_s: float = 30.0) -> Path:
    """Runs on the same traffic: load, Ready replicas and TTFT p95 of each."""
    return compare_series_plot([series(r, bin_s) for r in runs], path)


def compare_series_plot(items: list[dict[str, Any]], path: Path) -> Path:
    fig = Figure(figsize=(12, 9), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    fig.suptitle(items[0]["title"], fontsize=10)
    first = items[0]
    axes[0].plot(_minutes(first["bin_t"]), first["rate"], color="tab:blue")
    axes[0].set_ylabel("requests/s")
    axes[0].set_title("Load", fontsize=10, loc="left")
    for i, it in enumerate(items):
        c = f"C{i % 10}"
        axes[1].step(_minutes(it["t"]), it["ready"], where="post", label=it["name"], color=c, linewidth=1.5)
        p95 = np.where(np.isinf(it["p95"]), 120.0, it["p95"])
        axes[2].plot(_minutes(it["bin_t"]), p95 * 1000, label=it["name"], color=c, linewidth=1.4)
    axes[1].set_ylabel("Ready replicas")
    axes[1].set_title("Ready replicas", fontsize=10, loc="left")
    axes[1].legend(loc="upper left", fontsize=8, ncol=2)
    axes[1].set_ylim(bottom=0)
    axes[2].axhline(first["slo_s"] * 1000, color="tab:red", linestyle="--", linewidth=1, label="SLO")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("TTFT p95 (ms)")
    axes[2].set_title("TTFT p95 by arrival (a window lost to rejections is drawn at 120 s)", fontsize=10, loc="left")
    axes[2].legend(loc="upper left", fontsize=8, ncol=2)
    axes[2].set_xlabel("simulated time (minutes)")
    return _save(fig, path)
