"""Shared plumbing of the autoscale benchmarks: run simulations, describe the machine, write results/NAME.{json,md}.

These benchmarks run `inferline autoscale simulate`'s discrete-event simulator (no engines, no cluster):
their numbers are simulated seconds and do not depend on the machine; only the wall time (and so the
speed-up over real time) does, which is why the load average is recorded.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.table import Table

from inferline.autoscale.des import SimRun, SimSettings, Simulation
from inferline.autoscale.traffic import Traffic

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def run(traffic: Traffic, cfg: Any, settings: SimSettings) -> SimRun:
    return Simulation(traffic, cfg, settings).run()


def window_stats(r: SimRun, start: float, end: float) -> dict[str, Any]:
    """Requests arriving in [START, END): how many, p50/p95 TTFT of the served ones (ms), share late or rejected."""
    arr = r.traffic.arrival_s
    sel = (arr >= start) & (arr < end)
    n = int(sel.sum())
    if n == 0:
        return {"requests": 0, "ttft_p50_ms": None, "ttft_p95_ms": None, "late_or_rejected": None, "rejected": 0}
    ok = sel & (r.outcome == 1)
    ttft = (r.first_token_s - arr)[ok]
    rejected = int((sel & (r.outcome > 1)).sum())
    late = int(np.sum(ttft > r.settings.slo_ttft_s)) + rejected
    return {
        "requests": n,
        "ttft_p50_ms": round(float(np.percentile(ttft, 50)) * 1000, 1) if ttft.size else None,
        "ttft_p95_ms": round(float(np.percentile(ttft, 95)) * 1000, 1) if ttft.size else None,
        "late_or_rejected": round(late / n, 4),
        "rejected": rejected,
    }


def machine() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def md_table(cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(title: str, cols: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", caption=caption)
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    return t


def write_results(name: str, data: dict[str, Any], markdown: str, quick: bool = False) -> tuple[Path, Path]:
    """results/NAME.json and .md; --quick writes NAME.quick.* (git-ignored) so it never replaces a full run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if quick:
        name += ".quick"
    jpath, mpath = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    jpath.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    mpath.write_text(markdown)
    return jpath, mpath
