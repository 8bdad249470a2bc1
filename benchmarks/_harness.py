"""The one harness behind every script in benchmarks/ (not a benchmark itself).

- `Stack`: child processes (simulated engines, the gateway, real engines, peers), each in its own
  process group with output to a log file; waited for over HTTP; CPU time and RSS of the whole group
  read from /proc (LiteLLM's workers, vLLM's engine processes, gateway workers); always stopped: at
  exit, on SIGINT/SIGTERM, and when the script's wall-clock budget (SIGALRM) runs out.
- `Stack.sim` / `Stack.gateway` / `gateway_config`: the usual stack, on free loopback ports.
- `peer_venv`: a peer (LiteLLM, vllm-router) in its own cached venv under $INFERLINE_CACHE/peers.
- `bench` (with CPU of every process over exactly that run) and `load` / `load_sweep` (the bare
  RunResult): `inferline.bench` in this process, the load generator.
- `scrape` / `counter` / `hist`: Prometheus text from /metrics, histogram deltas and quantiles.
- `machine`, `header`, `write_results`, `md_table`, `rich_table`, `fmt`: the outputs under results/
  (`--quick` runs write NAME.quick.*, git-ignored, never the published numbers).

Only Linux is supported (/proc).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from inferline.net.ports import free_port, free_ports

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VENV_BIN = Path(sys.executable).parent
INFERLINE = str(VENV_BIN / "inferline")
CACHE = Path(os.environ.get("INFERLINE_CACHE", Path.home() / ".cache" / "inferline"))
PEERS = CACHE / "peers"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


class BudgetExceeded(Exception):
    """The script ran past its hard wall-clock budget."""


# --------------------------------------------------------------------------------------------
# /proc and ports


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_s(pid: int) -> float:
    """utime + stime of one process in seconds (0 when it is gone)."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK if f else 0.0


def group_pids(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = _stat_fields(int(name))
            if f and int(f[2]) == pgid:  # field 5 (pgrp) is index 2 after the command
                out.append(int(name))
    return out


def group_cpu_s(pgid: int) -> float:
    """CPU seconds of every live process in the group, plus what its leader reaped from children."""
    total = 0.0
    for pid in group_pids(pgid):
        f = _stat_fields(pid)
        if f:
            total += (int(f[11]) + int(f[12])) / CLK_TCK
            if pid == pgid:
                total += (int(f[13]) + int(f[14])) / CLK_TCK
    return total


def group_rss_mb(pgid: int) -> float:
    total = 0
    for pid in group_pids(pgid):
        f = _stat_fields(pid)
        if f:
            total += int(f[21]) * PAGE  # rss in pages (field 24)
    return round(total / 2**20, 1)


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (busy jiffies in /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


# --------------------------------------------------------------------------------------------
# child processes


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes]
    url: str = ""
    started_s: float = 0.0  # seconds until it answered

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_s(self) -> float:
        """CPU seconds of its whole process group (workers, engine subprocesses)."""
        return group_cpu_s(self.pid)

    def rss_mb(self) -> float:
        return group_rss_mb(self.pid)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    log_tail = tail


class Stack:
    """Every child process of the script; `stop_all()` runs at exit, on SIGTERM/SIGINT, and at the budget."""

    def __init__(self, budget_s: float) -> None:
        self.expired = False
        self.procs: list[Proc] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="inferline-bench-"))
        self.deadline = time.monotonic() + budget_s
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
        # `load` and `bench` raise again when they return.
        self.expired = True
        self.stop_all()
        if _STOP is not None and _LOOP is not None:
            _LOOP.call_soon_threadsafe(_STOP.set)
        raise BudgetExceeded("the script ran past its wall-clock budget; stopping")

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
        log = self.logdir / f"{name}.log"
        with open(log, "ab") as fh:
            popen = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,  # own process group: stop() ends its children too
            )
        p = Proc(name, list(argv), log, popen)
        self.procs.append(p)
        return p

    def wait_http(self, p: Proc, url: str, timeout_s: float = 90.0, ok: Iterable[int] = (200,)) -> Proc:
        """Poll url until it answers one of `ok`; raise with the log's tail if the process dies first."""
        t0 = time.monotonic()
        ok = tuple(ok)
        while True:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode} before it was ready:\n{p.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status in ok:
                        break
            except urllib.error.HTTPError as e:
                if e.code in ok:
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"{p.name} did not answer {url} within {timeout_s:.0f}s:\n{p.tail()}")
            time.sleep(0.1)
        p.started_s = round(time.monotonic() - t0, 1)
        return p

    def sim(
        self,
        name: str = "sim",
        count: int = 1,
        profile: str = "instant",
        *extra: str,
        max_num_seqs: int | None = None,
        timeout_s: float = 60.0,
    ) -> tuple[Proc, list[str]]:
        """`inferline sim` with COUNT engines on consecutive ports; the process and every engine's base URL."""
        base = free_ports(count)
        seqs = ["--max-num-seqs", str(max_num_seqs)] if max_num_seqs else []
        argv = [INFERLINE, "sim", "--port", str(base), "--count", str(count), "--profile", profile, *seqs, *extra]
        p = self.start(name, argv)
        urls = [f"http://127.0.0.1:{base + i}" for i in range(count)]
        for u in urls:
            self.wait_http(p, u + "/health", timeout_s)
        p.url = urls[0]
        return p, urls

    def gateway(
        self,
        name: str,
        cfg: dict[str, Any],
        timeout_s: float = 90.0,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Proc:
        """`inferline serve` with this config (YAML in the log folder) on a free port; waits for /ready."""
        import yaml

        port = free_port()
        path = self.logdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        p = self.start(name, [INFERLINE, "serve", "--config", str(path), "--port", str(port), *args], env=env)
        p.url = f"http://127.0.0.1:{port}"
        return self.wait_http(p, p.url + "/ready", timeout_s)

    def stop(self, p: Proc, grace_s: float = 10.0) -> None:
        if p.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(grace_s)
        # the leader may be gone while its group lives on (workers): make sure
        for _ in range(2):
            if not group_pids(p.pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.popen.wait(2)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        signal.alarm(0)
        for p in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(p, grace_s=5.0)


def inferline_cmd(*args: str) -> list[str]:
    return [INFERLINE, *args]


def gateway_config(
    backends: list[dict[str, Any]],
    *,
    log_level: str = "info",
    admission: dict[str, Any] | None = None,
    routing: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    model: str = "smollm2",
) -> dict[str, Any]:
    """A gateway config for one model; default settings except an unbounded queue and a short grace."""
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "log_level": log_level, "shutdown_grace_s": 2, **(server or {})},
    }
    if routing is not None:
        cfg["routing"] = dict(routing)
    cfg["admission"] = {"queue_max_depth": 100000, **(admission or {})}
    cfg["models"] = [{"name": model, "backends": backends}]
    return cfg


# --------------------------------------------------------------------------------------------
# peers in their own venvs


@dataclass
class Peer:
    name: str
    ok: bool
    bin: Path | None = None
    version: str | None = None
    note: str = ""
    install_s: float | None = None


def peer_venv(name: str, spec: str, dist: str, exe: str, mode: str) -> Peer:
    """A venv under $INFERLINE_CACHE/peers/NAME with `spec` installed (marker file = done).

    mode: "install" installs when missing; "cached" only uses what is there; "skip" never.
    """
    venv = PEERS / f"{name}-venv"
    marker = venv / ".inferline-ready"
    binary = venv / "bin" / exe
    if mode == "skip":
        return Peer(name, False, note="skipped (--peers skip)")
    if not (marker.exists() and binary.exists()):
        if mode != "install":
            return Peer(name, False, note=f"not installed in {venv} (run without --quick, or --peers install)")
        console.print(f"[bold]installing {spec} into {venv}[/] (once; cached afterwards)")
        t0 = time.monotonic()
        PEERS.mkdir(parents=True, exist_ok=True)
        if venv.exists():
            shutil.rmtree(venv)
        logf = PEERS / f"{name}-install.log"
        with open(logf, "wb") as fh:
            rc = subprocess.call([sys.executable, "-m", "venv", str(venv)], stdout=fh, stderr=subprocess.STDOUT)
            if rc == 0:
                rc = subprocess.call(
                    [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", spec],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=600,
                )
        if rc != 0 or not binary.exists():
            tail = [ln for ln in logf.read_text(errors="replace").splitlines() if "is ignored: it is neither" not in ln]
            return Peer(name, False, note=f"pip install {spec} failed (rc {rc}): " + " | ".join(tail[-4:]))
        marker.write_text(spec + "\n")
        install_s = round(time.monotonic() - t0, 1)
    else:
        install_s = None
    version = _dist_version(venv, dist)
    return Peer(name, True, binary, version, install_s=install_s)


def _dist_version(venv: Path, dist: str) -> str | None:
    try:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


# --------------------------------------------------------------------------------------------
# load


_LOOP: asyncio.AbstractEventLoop | None = None
_STOP: asyncio.Event | None = None


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def run_async(coro: Any) -> Any:
    global _LOOP
    if _LOOP is None:
        _LOOP = new_loop()
    return _LOOP.run_until_complete(coro)


async def _bench(cfg: Any) -> Any:
    from inferline.bench import run_bench

    global _STOP
    _STOP = asyncio.Event()
    try:
        return await run_bench(cfg, stop=_STOP)
    finally:
        _STOP = None


def _expired(stack: Stack | None) -> None:
    if stack is not None and stack.expired:
        raise BudgetExceeded("the script ran past its wall-clock budget")


def load_sweep(url: str, stack: Stack | None = None, **cfg: Any) -> list[Any]:
    """inferline.bench runs (BenchConfig fields as keywords); BudgetExceeded if the budget ran out meanwhile."""
    from inferline.bench import BenchConfig

    cfg.setdefault("model", "smollm2")
    result = run_async(_bench(BenchConfig(url=url, **cfg)))
    _expired(stack)
    return list(result.runs)


def load(url: str, stack: Stack | None = None, **cfg: Any) -> Any:
    """One inferline.bench run; returns its RunResult."""
    return load_sweep(url, stack, **cfg)[0]


@dataclass
class Measured:
    summary: dict[str, Any]
    wall_s: float
    cpu: dict[str, float]  # process name -> CPU seconds / wall seconds (1.0 = one core)
    chunks: int = 0  # content chunks received by the generator in successful requests
    cpu_s: dict[str, float] = field(default_factory=dict)  # process name -> CPU seconds over the run
    records: list[Any] = field(default_factory=list)  # the RequestRecords (to pool several runs)
    loadavg: list[float] = field(default_factory=list)  # 1/5/15-min load average at the end


def bench(url: str, procs: Sequence[Proc], stack: Stack | None = None, **cfg: Any) -> Measured:
    """One run of inferline.bench against url (BenchConfig fields as keywords), with CPU use of each
    process in `procs` (whole process groups) and of this process (the generator) over the run."""
    from inferline.bench import BenchConfig

    cfg.setdefault("model", "smollm2")
    conf = BenchConfig(url=url, **cfg)
    before = {p.name: p.cpu_s() for p in procs}
    me0, t0 = self_cpu_s(), time.monotonic()
    result = run_async(_bench(conf))
    wall = time.monotonic() - t0
    _expired(stack)
    used = {p.name: p.cpu_s() - before[p.name] for p in procs}
    used["loadgen"] = self_cpu_s() - me0
    cpu = {k: round(v / wall, 3) for k, v in used.items()}
    run = result.runs[0]
    chunks = sum(len(r.chunk_s) for r in run.records if r.ok)
    return Measured(run.summary, wall, cpu, chunks, {k: round(v, 3) for k, v in used.items()}, run.records, loadavg())


def saturate(url: str, procs: Sequence[Proc], *, concurrency: int, duration_s: float, **kw: Any) -> dict[str, Any]:
    """Closed-loop streaming at `concurrency` with the cheap generator (_firehose): throughput over the
    window, and CPU seconds per completed request of every process in `procs` and of the generator."""
    from _firehose import run

    before = {p.name: p.cpu_s() for p in procs}
    me0 = self_cpu_s()
    out: dict[str, Any] = run_async(run(url, concurrency=concurrency, duration_s=duration_s, **kw))
    used = {p.name: p.cpu_s() - before[p.name] for p in procs}
    used["loadgen"] = self_cpu_s() - me0
    n = max(1, out["all_completed"])
    out["cpu_ms_per_request"] = {k: round(v / n * 1e3, 4) for k, v in used.items()}
    out["cpu_ratio"] = {k: round(v / out["all_wall_s"], 3) for k, v in used.items()}
    out["loadavg"] = loadavg()
    return out


def settle(procs: Sequence[Proc], max_s: float = 15.0, idle_ratio: float = 0.05) -> float:
    """Wait until every process in `procs` is idle (CPU below idle_ratio of a core over 0.5 s): a
    server still working through the backlog of the last run must not tax the next one."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_s:
        before = [p.cpu_s() for p in procs]
        time.sleep(0.5)
        if all((p.cpu_s() - b) / 0.5 < idle_ratio for p, b in zip(procs, before, strict=True)):
            break
    return round(time.monotonic() - t0, 1)


def error_ratio(s: dict[str, Any]) -> float:
    n = s.get("requests") or 0
    return (s.get("failed", 0) + s.get("cancelled", 0)) / n if n else 1.0


def pct(s: dict[str, Any], metric: str, q: str) -> float | None:
    v = (s.get(metric) or {}).get(q)
    return None if v is None else float(v)


# --------------------------------------------------------------------------------------------
# Prometheus text


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

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
    return {
        "hostname": m.get("hostname"),
        "cores": m.get("cpu_count"),
        "cpu_model": m.get("cpu_model"),
        "ram_gib": round((m.get("memory_total_kb") or 0) / 2**20, 1),
        "platform": m.get("platform"),
        "loadavg_at_start": loadavg(),
        "argv": m.get("argv"),
        "versions": info["versions"],
        "git": git_state(),
    }


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def git_state() -> dict[str, Any]:
    """The commit measured, and whether src/ differed from it (peers edit the tree while we run)."""
    dirty = _git("status", "--porcelain", "--", "src")
    return {"commit": _git("rev-parse", "--short=12", "HEAD") or None, "src_modified": dirty.splitlines()[:20]}


def git_commit() -> str | None:
    """Short commit, '+dirty-src' when src/ differs from it."""
    g = git_state()
    if not g["commit"]:
        return None
    return str(g["commit"]) + ("+dirty-src" if g["src_modified"] else "")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def python_version() -> str:
    return platform.python_version()


def header(title: str, data: dict[str, Any]) -> str:
    m = data["machine"]
    v = m["versions"]
    g = m.get("git") or {}
    commit = f"commit {g.get('commit')}{', src/ modified' if g.get('src_modified') else ''}"
    peers = ", ".join(f"{k} {val}" for k, val in sorted(data.get("peer_versions", {}).items()) if val)
    return (
        f"# {title}\n\n"
        f"{data['date']} · mode `{data['mode']}` · {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM · "
        f"load average at start {m['loadavg_at_start']} · inferline {v.get('inferline')} ({commit}), "
        f"Python {v.get('python')}" + (f" · {peers}" if peers else "") + "\n\n"
    )


def write_results(name: str, data: dict[str, Any], markdown: str, quick: bool = False) -> tuple[Path, Path]:
    """results/NAME.json and .md; a --quick smoke run writes NAME.quick.* (git-ignored) instead, so it
    never replaces the published full-run numbers."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if quick:
        name += ".quick"
    jpath, mpath = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
    jpath.write_bytes(orjson.dumps(data, option=opts) + b"\n")
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


def main_guard(fn: Callable[[], int]) -> None:
    """Run a script's main; turn the budget alarm and Ctrl-C into a clean stop with a message."""
    try:
        rc = fn()
    except BudgetExceeded as exc:
        console.print(f"[red]{exc}[/]")
        rc = 3
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        rc = 130
    sys.exit(rc)
