"""Plumbing shared by hol_priority.py, affinity.py and calibrate_sim.py (not a benchmark itself).

- `Stack`: child processes (simulated engines, the gateway, the embedded engine), each in its own
  process group with output to a log file; always stopped: at exit, on SIGINT/SIGTERM, and when the
  script's wall-clock budget (SIGALRM) runs out.
- `load`: one `inferline.bench` run in this process, returning its records and summary.
- `scrape` / `hist` / `counter`: Prometheus text from /metrics, histogram deltas and quantiles.
- `write_results`, `md_table`, `rich_table`: outputs under benchmarks/results/.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
INFERLINE = str(Path(sys.executable).parent / "inferline")

console = Console(highlight=False, width=160)


class BudgetExceeded(Exception):
    pass


def free_ports(n: int) -> int:
    """A base port P such that P..P+n-1 are free now (for `inferline sim --port P --count n`)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n >= 65000:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def cpu_s(self) -> float:
        try:
            fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stack:
    """Every child process of the script; `stop_all()` runs at exit, on SIGTERM/SIGINT, and at the budget."""

    def __init__(self, budget_s: float) -> None:
        self.expired = False
        self.procs: list[Proc] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="inferline-bench-"))
        atexit.register(self.stop_all)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.alarm(max(1, int(budget_s)))

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stop_all()
        raise KeyboardInterrupt

    def _on_alarm(self, signum: int, frame: Any) -> None:
        # Stop the children first: a load run in progress then ends at once (its requests fail), even
        # where the event loop swallows this exception (uvloop runs signal handlers as callbacks);
        # `load` raises again when it returns.
        self.expired = True
        self.stop_all()
        if _STOP is not None and _LOOP is not None:
            _LOOP.call_soon_threadsafe(_STOP.set)
        raise BudgetExceeded("the script ran past its wall-clock budget")

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        log = self.logdir / f"{name}.log"
        with open(log, "ab") as fh:
            popen = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        p = Proc(name, popen, log)
        self.procs.append(p)
        return p

    def wait_http(self, p: Proc, url: str, timeout_s: float = 60.0) -> None:
        t0 = time.monotonic()
        while True:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited ({p.popen.returncode}) before it was ready:\n{p.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"{p.name} did not answer {url} in {timeout_s:.0f}s:\n{p.tail()}")
            time.sleep(0.1)

    def sim(self, name: str, count: int, profile: str, *extra: str) -> tuple[Proc, list[str]]:
        """`inferline sim` with COUNT engines on consecutive ports; returns the process and their base URLs."""
        base = free_ports(count)
        argv = [INFERLINE, "sim", "--port", str(base), "--count", str(count), "--profile", profile, *extra]
        p = self.start(name, argv)
        urls = [f"http://127.0.0.1:{base + i}" for i in range(count)]
        for u in urls:
            self.wait_http(p, u + "/health")
        p.url = urls[0]
        return p, urls

    def gateway(self, name: str, cfg: dict[str, Any], timeout_s: float = 60.0) -> Proc:
        import yaml

        port = free_ports(1)
        path = self.logdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        p = self.start(name, [INFERLINE, "serve", "--config", str(path), "--port", str(port)])
        p.url = f"http://127.0.0.1:{port}"
        self.wait_http(p, p.url + "/ready", timeout_s)
        return p

    def stop(self, p: Proc, grace_s: float = 10.0) -> None:
        if p.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGTERM)
            try:
                p.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait(5)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        signal.alarm(0)
        for p in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(p, grace_s=5.0)


def gateway_config(
    backends: list[dict[str, Any]],
    *,
    admission: dict[str, Any] | None = None,
    routing: dict[str, Any] | None = None,
    model: str = "smollm2",
) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "log_level": "warning", "shutdown_grace_s": 2},
        "routing": {"load_interval_s": 0.1, **(routing or {})},
        "admission": {"queue_max_depth": 100000, **(admission or {})},
        "models": [{"name": model, "backends": backends}],
    }


# --------------------------------------------------------------------------------------------
# load


_LOOP: asyncio.AbstractEventLoop | None = None
_STOP: asyncio.Event | None = None


def run_async(coro: Any) -> Any:
    global _LOOP
    if _LOOP is None:
        try:
            import uvloop

            _LOOP = uvloop.new_event_loop()
        except ImportError:
            _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


async def _bench(cfg: Any) -> Any:
    from inferline.bench import run_bench

    global _STOP
    _STOP = asyncio.Event()
    try:
        return await run_bench(cfg, stop=_STOP)
    finally:
        _STOP = None


def load_sweep(url: str, stack: Stack | None = None, **cfg: Any) -> list[Any]:
    """inferline.bench runs (BenchConfig fields as keywords); BudgetExceeded if the budget ran out meanwhile."""
    from inferline.bench import BenchConfig

    cfg.setdefault("model", "smollm2")
    result = run_async(_bench(BenchConfig(url=url, **cfg)))
    if stack is not None and stack.expired:
        raise BudgetExceeded("the script ran past its wall-clock budget")
    return list(result.runs)


def load(url: str, stack: Stack | None = None, **cfg: Any) -> Any:
    """One inferline.bench run; returns its RunResult."""
    return load_sweep(url, stack, **cfg)[0]


# --------------------------------------------------------------------------------------------
# Prometheus text


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def counter(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def hist(before: Samples, after: Samples, name: str, **labels: str) -> dict[str, float | None]:
    """Count, mean and p50/p90/p99 (linear within buckets, as histogram_quantile) of the observations
    a histogram received between two scrapes."""

    def buckets(s: Samples) -> dict[float, float]:
        out: dict[float, float] = {}
        for lab, v in s.get(name + "_bucket", []):
            if all(lab.get(k) == x for k, x in labels.items()):
                le = float(lab["le"])
                out[le] = out.get(le, 0.0) + v
        return out

    b0, b1 = buckets(before), buckets(after)
    edges = sorted(b1)
    cum = [b1[e] - b0.get(e, 0.0) for e in edges]
    n = counter(after, name + "_count", **labels) - counter(before, name + "_count", **labels)
    total = counter(after, name + "_sum", **labels) - counter(before, name + "_sum", **labels)
    out: dict[str, float | None] = {"count": n, "mean": total / n if n else None}
    for q in (50, 90, 99):
        out[f"p{q}"] = _bucket_quantile(edges, cum, q / 100) if n else None
    return out


def _bucket_quantile(edges: list[float], cum: list[float], q: float) -> float | None:
    total = cum[-1] if cum else 0.0
    if total <= 0:
        return None
    rank = q * total
    prev_edge, prev_cum = 0.0, 0.0
    for e, c in zip(edges, cum, strict=True):
        if c >= rank:
            if math.isinf(e):
                return prev_edge
            return prev_edge + (e - prev_edge) * ((rank - prev_cum) / (c - prev_cum) if c > prev_cum else 0.0)
        prev_edge, prev_cum = e, c
    return prev_edge


# --------------------------------------------------------------------------------------------
# output


def machine() -> dict[str, Any]:
    from inferline.bench.report import machine_info

    info = machine_info()
    m = info["machine"]
    try:
        load_avg = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        load_avg = []
    return {
        "hostname": m.get("hostname"),
        "cores": m.get("cpu_count"),
        "cpu_model": m.get("cpu_model"),
        "ram_gib": round((m.get("memory_total_kb") or 0) / 2**20, 1),
        "platform": m.get("platform"),
        "loadavg_at_start": load_avg,
        "argv": m.get("argv"),
        "versions": info["versions"],
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True
        )
        return out.stdout.strip() + ("+dirty-src" if dirty.stdout.strip() else "")
    except OSError:
        return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def header(title: str, data: dict[str, Any]) -> str:
    m = data["machine"]
    v = m["versions"]
    return (
        f"# {title}\n\n"
        f"{data['date']} · mode `{data['mode']}` · {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM · "
        f"load average at start {m['loadavg_at_start']} · inferline {v.get('inferline')} (git {data.get('git')}), "
        f"Python {v.get('python')}\n\n"
    )


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    jpath, mpath = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    jpath.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    mpath.write_text(markdown)
    return jpath, mpath


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def md_table(cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def rich_table(title: str, cols: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None) -> Table:
    t = Table(title=title, header_style="bold", caption=caption, caption_justify="left")
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*(fmt(c) for c in r))
    return t


def main_guard(fn: Any) -> None:
    try:
        rc = fn()
    except BudgetExceeded as exc:
        console.print(f"[red]{exc}[/]")
        rc = 3
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        rc = 130
    sys.exit(rc)
