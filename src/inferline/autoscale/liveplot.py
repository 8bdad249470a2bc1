"""The PNG of a live run against its simulation: load and the HPA metric, replicas, TTFT, gateway queue over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inferline.autoscale.livecompare import Side, reaction, ttft_bins

__all__ = ["live_vs_sim_plot"]

_STYLE = {"live": {"linestyle": "-", "alpha": 0.95}, "simulated": {"linestyle": "--", "alpha": 0.9}}


def live_vs_sim_plot(live: Side, sim: Side, path: Path, title: str, bin_s: float = 10.0) -> Path:
    fig = Figure(figsize=(12, 12), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    fig.suptitle(title, fontsize=10, wrap=True)
    horizon = max(live.end_s, sim.end_s)

    ax = axes[0]
    edges = np.arange(0.0, horizon + bin_s, bin_s)
    counts, _ = np.histogram(live.arrival_s, bins=edges)
    ax.bar(edges[:-1], counts / bin_s, width=bin_s, align="edge", color="tab:blue", alpha=0.25, label="arrivals")
    ax.set_ylabel("requests/s")
    ax2 = ax.twinx()
    for side, color in ((live, "tab:red"), (sim, "tab:purple")):
        ax2.plot(side.ratio_t, side.ratio, color=color, linewidth=1.1, label=f"metric / target ({side.name})",
                 **_STYLE[side.name])  # fmt: skip
    ax2.axhline(1.0 + live.tolerance, color="gray", linestyle=":", linewidth=1, label="target x (1 + tolerance)")
    ax2.set_ylabel("HPA metric / target")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    ax.set_title("Load, and the autoscaler's metric (live: from Prometheus; simulated: true state)", fontsize=10,
                 loc="left")  # fmt: skip

    ax = axes[1]
    for side in (live, sim):
        st = _STYLE[side.name]
        ax.step(side.grid_t, side.desired, where="post", color="tab:orange", linewidth=1.6,
                label=f"desired ({side.name})", **st)  # fmt: skip
        ax.step(side.grid_t, side.ready, where="post", color="tab:green", linewidth=1.6,
                label=f"Ready ({side.name})", **st)  # fmt: skip
        r = reaction(side)
        for t, color in ((r.breach_s, "tab:red"), (r.decision_s, "tab:orange"), (r.first_request_s, "tab:green")):
            if t is not None:
                ax.axvline(t, color=color, linewidth=0.9, **st)
    ax.set_ylabel("replicas")
    ax.set_ylim(bottom=0, top=max(live.max_replicas, sim.max_replicas) + 0.5)
    ax.set_title("Replicas (vertical lines: breach, scale-up decision, new engine's first request)", fontsize=10,
                 loc="left")  # fmt: skip
    ax.legend(loc="upper right", fontsize=8, ncol=2)

    ax = axes[2]
    for side in (live, sim):
        b = ttft_bins(side, bin_s)
        st = _STYLE[side.name]
        p95 = np.where(np.isinf(b["p95"]), np.nan, b["p95"])
        ax.plot(b["t"], p95 * 1000, color="tab:blue", marker=".", label=f"p95 ({side.name})", **st)
        ax.plot(b["t"], b["p50"] * 1000, color="tab:cyan", marker=".", label=f"p50 ({side.name})", **st)
    ax.axhline(800, color="tab:red", linestyle=":", linewidth=1, label="800 ms")
    ax.set_yscale("log")
    ax.set_ylabel("TTFT (ms)")
    ax.set_title(f"TTFT by arrival ({bin_s:g} s bins)", fontsize=10, loc="left")
    ax.legend(loc="upper right", fontsize=8, ncol=3)

    ax = axes[3]
    for side in (live, sim):
        ax.plot(side.queue_t, side.queue, color="tab:purple", linewidth=1.2, label=f"gateway queue ({side.name})",
                **_STYLE[side.name])  # fmt: skip
    ax.set_ylabel("waiting requests")
    ax.set_xlabel("seconds since the first request")
    ax.set_title("Gateway queue (live: inferline_queue_depth from Prometheus)", fontsize=10, loc="left")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlim(0, horizon)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path
