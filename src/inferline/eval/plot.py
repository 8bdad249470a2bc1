"""plot: one PNG: accuracy per category per endpoint with 95% Wilson intervals, and each candidate's drop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inferline.eval.compare import Comparison, Summary

DPI = 110


def write_plot(summaries: Sequence[Summary], comparisons: Sequence[Comparison], path: Path, title: str) -> Path:
    cats = [*sorted({c for s in summaries for c in s.categories}), "overall"]
    fig = Figure(figsize=(max(9.0, 1.6 * len(cats) + 3), 8.0), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1)
    width = 0.8 / max(1, len(summaries))
    x = np.arange(len(cats))
    for i, s in enumerate(summaries):
        accs = [s.categories.get(c, s.overall) if c != "overall" else s.overall for c in cats]
        vals = np.array([a.value * 100 for a in accs])
        lo = np.array([a.ci[0] * 100 for a in accs])
        hi = np.array([a.ci[1] * 100 for a in accs])
        # Wilson bounds can sit a rounding error inside the point (100%: hi 0.9999999...); matplotlib rejects
        # negative error bars, so clip at 0.
        err = np.clip(np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)]), 0, None)
        ax1.bar(
            x + (i - (len(summaries) - 1) / 2) * width,
            np.nan_to_num(vals),
            width,
            yerr=err,
            capsize=3,
            label=f"{s.name} ({s.model})",
        )
    ax1.set_xticks(x, cats)
    ax1.set_ylabel("accuracy (%)")
    ax1.set_ylim(0, 105)
    ax1.set_title(f"{title}: accuracy per category (95% Wilson intervals)")
    ax1.grid(True, axis="y", alpha=0.3)
    ax1.legend(fontsize="small", loc="upper right")
    if comparisons:
        width2 = 0.8 / len(comparisons)
        for i, c in enumerate(comparisons):
            ivs = [c.category_drop.get(k) if k != "overall" else c.accuracy_drop for k in cats]
            pts = np.array([iv.point * 100 if iv and not math.isnan(iv.point) else np.nan for iv in ivs])
            lo = np.array([iv.low * 100 if iv and not math.isnan(iv.low) else np.nan for iv in ivs])
            hi = np.array([iv.high * 100 if iv and not math.isnan(iv.high) else np.nan for iv in ivs])
            err = np.clip(np.vstack([np.nan_to_num(pts - lo), np.nan_to_num(hi - pts)]), 0, None)
            verdict = "" if c.passed is None else (" PASS" if c.passed else " FAIL")
            ax2.bar(
                x + (i - (len(comparisons) - 1) / 2) * width2,
                np.nan_to_num(pts),
                width2,
                yerr=err,
                capsize=3,
                label=f"{c.candidate} vs {c.baseline}{verdict}",
            )
        ax2.axhline(0, color="black", linewidth=0.8)
        for t in comparisons[0].terms:
            if t.term.metric == "accuracy_drop" and t.term.category is None:
                ax2.axhline(t.term.value * 100, color="red", linestyle="--", linewidth=1, label=f"gate {t.term.text}")
        ax2.set_xticks(x, cats)
        ax2.set_ylabel("accuracy drop (pp, + = worse)")
        ax2.set_title("candidate - baseline: accuracy drop with 95% paired-bootstrap intervals")
        ax2.grid(True, axis="y", alpha=0.3)
        ax2.legend(fontsize="small", loc="upper right")
    else:
        ax2.set_visible(False)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path
