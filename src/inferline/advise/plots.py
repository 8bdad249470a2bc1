"""Cost against traffic: each option's monthly cost over requests/day, the workload and where options cross."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inferline.advise.options import OPTION_NAMES
from inferline.advise.report import Inputs, cost_curve

__all__ = ["cost_plot"]


def cost_plot(inp: Inputs, path: Path) -> Path:
    w = inp.workload
    lo = min(1e3, w.requests_per_day / 10)
    hi = max(1e7, w.requests_per_day * 10)
    grid = np.logspace(math.log10(lo), math.log10(hi), 61)
    curves = cost_curve(inp, grid)
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    ax = fig.subplots()
    for i, (key, ys) in enumerate(curves.items()):
        y = np.asarray(ys, dtype=float)
        y = np.where(np.isfinite(y), y, np.nan)
        label = OPTION_NAMES[key] + (" (cannot meet the SLO)" if np.isnan(y).all() else "")
        ax.plot(grid, y, label=label, color=f"C{i}", linewidth=1.8)
        if np.isnan(y).any() and not np.isnan(y).all():
            last = int(np.where(~np.isnan(y))[0][-1])
            ax.annotate(
                "capped", (grid[last], y[last]), textcoords="offset points", xytext=(4, 4), fontsize=8, color=f"C{i}"
            )
    _crossings(ax, grid, curves)
    ax.axvline(w.requests_per_day, color="black", linestyle="--", linewidth=1)
    ax.text(
        w.requests_per_day,
        0.02,
        f" {w.name}: {w.requests_per_day:,.0f}/day",
        transform=ax.get_xaxis_transform(),
        fontsize=8,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests per day (peak scaled alike)")
    ax.set_ylabel(f"cost per month ({inp.prices.currency})")
    ax.set_title(
        f"Cost against traffic: prompt {w.prompt_tokens} / output {w.output_tokens} tokens, "
        f"p95 TTFT <= {w.ttft_slo_ms:.0f} ms "
        f"(prices as of {inp.prices.as_of}; capacity SIMULATED)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def _crossings(ax: Axes, grid: np.ndarray, curves: dict[str, list[float]]) -> None:
    """Mark where the dedicated cluster crosses the per-token options."""
    ded = np.asarray(curves["dedicated-vllm"], dtype=float)
    for key in ("serverless", "managed-api"):
        other = np.asarray(curves[key], dtype=float)
        diff = other - ded
        for i in range(1, len(grid)):
            if np.isfinite(diff[i - 1]) and np.isfinite(diff[i]) and diff[i - 1] < 0 <= diff[i]:
                ax.scatter([grid[i]], [ded[i]], color="black", zorder=5, s=18)
                ax.annotate(
                    f"{OPTION_NAMES[key].split(' (')[0]} = dedicated\n~{grid[i]:,.0f}/day",
                    (grid[i], ded[i]),
                    textcoords="offset points",
                    xytext=(6, -24),
                    fontsize=8,
                )
