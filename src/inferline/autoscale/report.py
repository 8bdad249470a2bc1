"""What a simulation says: SLO minutes, TTFT over time, reaction times, GPU-hours; tables and the JSON file.

Definitions (all on simulated time):
  TTFT             first token - arrival at the gateway (queueing in the gateway included)
  SLO minute       a minute (by arrival) whose p95 TTFT is above the SLO, counting every request that was
                   rejected or cut off as infinitely late (a 429 is not a fast answer)
  breach           the true value of the autoscaler's metric (no scrape, no lag) passes target x (1 + the
                   scale-up tolerance) while below maxReplicas
  to decision      breach -> the first scale-up the autoscaler orders after it
  to first ready   breach -> the first pod of that scale-up turning Ready
  to capacity      breach -> as many Ready pods as that scale-up asked for
  GPU-hours        per pod, from binding to a node (the GPU is held while the image pulls and the model
                   loads) to termination
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from inferline.autoscale.des import OUTCOMES, SimRun

__all__ = ["print_compare", "print_summary", "rank", "summarize", "ttft_series", "write_json"]


def ttft_series(run: SimRun, bin_s: float) -> dict[str, np.ndarray]:
    """Per bin of arrival time: requests, p50 and p95 TTFT (s; failures as inf), rate, whether p95 > SLO."""
    tr = run.traffic
    end = run.end_s
    nbins = max(1, math.ceil(end / bin_s))
    edges = np.arange(nbins + 1) * bin_s
    ttft = run.first_token_s - tr.arrival_s
    failed = (run.outcome > 1) | ((run.outcome == 1) & np.isnan(ttft))
    ttft = np.where(failed, np.inf, ttft)
    counted = (run.outcome != 0) | ~np.isnan(run.first_token_s)  # leave out requests still waiting at the end
    which = np.clip(np.searchsorted(edges, tr.arrival_s, side="right") - 1, 0, nbins - 1)
    p50 = np.full(nbins, np.nan)
    p95 = np.full(nbins, np.nan)
    count = np.zeros(nbins, dtype=np.int64)
    for b in range(nbins):
        sel = ttft[(which == b) & counted]
        count[b] = sel.size
        if sel.size:
            p50[b], p95[b] = np.percentile(sel, [50, 95], method="higher")
    rate = np.bincount(which, minlength=nbins)[:nbins] / bin_s
    violation = np.where(np.isnan(p95), False, p95 > run.settings.slo_ttft_s)
    return {"t": edges[:-1] + bin_s / 2, "p50": p50, "p95": p95, "count": count, "rate": rate, "violation": violation}


def summarize(run: SimRun, bin_s: float = 60.0) -> dict[str, Any]:
    """The numbers of one run (JSON-ready)."""
    tr = run.traffic
    ok = run.outcome == 1
    ttft_ok = (run.first_token_s - tr.arrival_s)[ok]
    counts = {name: int((run.outcome == i).sum()) for i, name in enumerate(OUTCOMES)}
    rejected = {k: v for k, v in counts.items() if k not in ("ok", "unfinished") and v}
    minute = ttft_series(run, 60.0)
    gpu_s = sum(p.gpu_seconds(run.end_s) for p in run.pods)
    tl = run.timeline
    ups = [d for d in run.decisions if d.desired > d.current]
    downs = [d for d in run.decisions if d.desired < d.current]
    scaled = [e for e in run.episodes if e.decision_s is not None]
    first = scaled[0].to_json() if scaled else None
    slo = run.settings.slo_ttft_s
    over = int(np.sum(ttft_ok > slo)) + sum(rejected.values())
    served = max(1, int(ok.sum()) + sum(rejected.values()))
    return {
        "name": run.autoscaler.name,
        "autoscaler": run.autoscaler.describe(),
        "kind": run.autoscaler.kind,
        "source": run.autoscaler.source,
        "traffic": tr.source,
        "profile": run.settings.profile.name,
        "requests": len(tr),
        "outcomes": counts,
        "rejected": sum(rejected.values()),
        "ttft_ms": {"p50": _pct_ms(ttft_ok, 50), "p95": _pct_ms(ttft_ok, 95), "p99": _pct_ms(ttft_ok, 99)},
        "slo_ttft_ms": slo * 1000.0,
        "slo_violation_minutes": int(minute["violation"].sum()),
        "requests_over_slo_ratio": round(over / served, 4),
        "gpu_hours": round(gpu_s / 3600.0, 3),
        "mean_ready_replicas": round(float(np.mean(tl["ready"])) if tl["ready"].size else 0.0, 2),
        "max_replicas": int(np.max(tl["desired"])) if tl["desired"].size else 0,
        "scale_ups": len(ups),
        "scale_downs": len(downs),
        "first_scale_up": first,
        "episodes": [e.to_json() for e in run.episodes],
        "median_to_decision_s": _median([e.decision_s - e.breach_s for e in scaled if e.decision_s is not None]),
        "median_to_capacity_s": _median([e.capacity_s - e.breach_s for e in scaled if e.capacity_s is not None]),
        "simulated_s": round(run.end_s, 1),
        "wall_s": round(run.wall_s, 3),
        "speedup": round(run.end_s / run.wall_s, 1) if run.wall_s > 0 else None,
        "events": run.events,
        "engine_steps": run.engine_steps,
    }


def _pct_ms(a: np.ndarray, q: float) -> float | None:
    return None if a.size == 0 else round(float(np.percentile(a, q)) * 1000.0, 1)


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 1) if values else None


def rank(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first: fewest SLO-violation minutes, then fewest GPU-hours, then fewest rejected requests."""
    return sorted(summaries, key=lambda s: (s["slo_violation_minutes"], s["gpu_hours"], s["rejected"]))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def print_summary(console: Console, s: dict[str, Any]) -> None:
    t = Table(title=f"{s['name']}: {s['autoscaler']}", title_justify="left", show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    ttft = s["ttft_ms"]
    first = s["first_scale_up"]
    react = "no scale-up"
    if first:
        react = (
            f"breach at {first['breach_s']:.0f} s -> decision +{_s(first['to_decision_s'])} s, "
            f"first pod Ready +{_s(first['to_first_ready_s'])} s, capacity +{_s(first['to_capacity_s'])} s "
            f"({first['replicas_from']} -> {first['replicas_to']} replicas)"
        )
    rej = ", ".join(f"{k} {v}" for k, v in s["outcomes"].items() if k not in ("ok", "unfinished") and v) or "none"
    rows = [
        ("traffic", f"{s['traffic']} ({s['requests']:,} requests, profile {s['profile']})"),
        ("TTFT ok requests", f"p50 {_ms(ttft['p50'])} ms, p95 {_ms(ttft['p95'])} ms, p99 {_ms(ttft['p99'])} ms"),
        (
            "SLO",
            f"{s['slo_violation_minutes']} minutes with p95 TTFT > {s['slo_ttft_ms']:.0f} ms; "
            f"{s['requests_over_slo_ratio']:.1%} of requests late or rejected",
        ),
        ("rejected", rej),
        ("first scale-up", react),
        (
            "median of all scale-ups",
            f"to decision {_s(s['median_to_decision_s'])} s, to capacity "
            f"{_s(s['median_to_capacity_s'])} s ({s['scale_ups']} up, {s['scale_downs']} down)",
        ),
        ("replicas", f"mean Ready {s['mean_ready_replicas']}, max {s['max_replicas']}"),
        ("GPU-hours", f"{s['gpu_hours']:.2f}"),
        (
            "simulation",
            f"{s['simulated_s']:,.0f} s simulated in {s['wall_s']:.1f} s ({s['speedup']}x real time, "
            f"{s['events']:,} events)",
        ),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def print_compare(console: Console, summaries: list[dict[str, Any]]) -> Table:
    ranked = rank(summaries)
    t = Table(title="autoscaling configurations, best first (SLO minutes, then GPU-hours)", title_justify="left")
    for col in (
        "#",
        "config",
        "SLO min",
        "late/rejected",
        "rejected",
        "TTFT p50",
        "TTFT p95",
        "GPU-h",
        "mean ready",
        "max",
        "to decision",
        "to capacity",
    ):
        t.add_column(col, justify="left" if col == "config" else "right")
    for i, s in enumerate(ranked, 1):
        first = s["first_scale_up"] or {}
        t.add_row(
            str(i),
            s["name"],
            str(s["slo_violation_minutes"]),
            f"{s['requests_over_slo_ratio']:.1%}",
            f"{s['rejected']:,}",
            _ms(s["ttft_ms"]["p50"]),
            _ms(s["ttft_ms"]["p95"]),
            f"{s['gpu_hours']:.2f}",
            f"{s['mean_ready_replicas']:.1f}",
            str(s["max_replicas"]),
            _s(first.get("to_decision_s")),
            _s(first.get("to_capacity_s")),
        )
    t.caption = "TTFT in ms (served requests); to decision / capacity: seconds from the first threshold breach"
    console.print(t)
    return t


def run_json(run: SimRun, summary: dict[str, Any], bin_s: float) -> dict[str, Any]:
    series = ttft_series(run, bin_s)
    tl = run.timeline
    step = max(1, round(bin_s / run.settings.probe_s / 4))  # a few points per bin is plenty
    return {
        "summary": summary,
        "ttft_series": {
            k: [None if (isinstance(x, float) and not math.isfinite(x)) else x for x in v.tolist()]
            for k, v in series.items()
        },
        "timeline": {k: v[::step].tolist() for k, v in tl.items()},
        "decisions": [
            {
                "t": d.time_s,
                "from": d.current,
                "to": d.desired,
                "metric_desired": d.metric_desired,
                "reason": d.reason,
                "limited": d.limited,
                "usage": d.usage,
                "errors": d.errors,
            }
            for d in run.decisions
            if d.rescaled
        ],
        "pods": [
            {
                "name": p.name,
                "created_s": p.created_s,
                "bound_s": p.bound_s,
                "running_s": p.running_s,
                "ready_s": p.ready_s,
                "deleted_s": p.deleted_s,
                "terminated_s": p.terminated_s,
            }
            for p in run.pods
        ],
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
