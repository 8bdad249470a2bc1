"""Shared plumbing of the benchmark scripts in this folder (not a benchmark itself).

- `Procs`: start child processes (each in its own process group, output to a log file), wait for
  them to answer HTTP, read their CPU time from /proc (the whole group: LiteLLM's workers, vLLM's
  engine processes), and always stop them: at exit, on SIGINT/SIGTERM, and at a hard wall-clock
  budget (SIGALRM), so a script never leaves anything running.
- `peer_venv`: a peer (LiteLLM, vllm-router) in its own cached venv under $INFERLINE_CACHE/peers.
- `bench`: one `inferline.bench` run in this process (the load generator), with the CPU of every
  process measured over exactly that run.
- `write_results`: the JSON (machine, date, versions) and the markdown table next to it.

Only Linux is supported (/proc).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import platform
import shutil
import signal
import socket
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

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("INFERLINE_CACHE", Path.home() / ".cache" / "inferline"))
PEERS = CACHE / "peers"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


class BudgetExceeded(Exception):
    """The script ran past its hard wall-clock budget."""


# --------------------------------------------------------------------------------------------
# /proc


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        return group_cpu_s(self.pid)

    def rss_mb(self) -> float:
        return group_rss_mb(self.pid)

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class Procs:
    """Every child this script started; stopped in reverse order at exit, signal or budget."""

    def __init__(self, budget_s: float) -> None:
        self.items: list[Proc] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="inferline-bench-"))
        self.deadline = time.monotonic() + budget_s
        atexit.register(self.stop_all)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.alarm(max(1, int(budget_s)))

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_all()
        raise KeyboardInterrupt

    def _on_alarm(self, signum: int, frame: Any) -> None:
        raise BudgetExceeded("the script ran past its wall-clock budget; stopping")

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
        log = self.logdir / f"{name}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        fh = open(log, "wb")  # noqa: SIM115 - the child owns it
        popen = subprocess.Popen(
            list(argv),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,  # own process group: stop() ends its children too
        )
        fh.close()
        p = Proc(name, list(argv), log, popen)
        self.items.append(p)
        return p

    def wait_http(self, p: Proc, url: str, timeout_s: float = 90.0, ok: Iterable[int] = (200,)) -> Proc:
        """Poll url until it answers one of `ok`; raise with the log's tail if the process dies first."""
        t0 = time.monotonic()
        ok = tuple(ok)
        while True:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode} before it was ready:\n{p.log_tail()}")
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
                raise RuntimeError(f"{p.name} did not answer {url} within {timeout_s:.0f}s:\n{p.log_tail()}")
            time.sleep(0.2)
        p.started_s = round(time.monotonic() - t0, 1)
        return p

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
        if p in self.items:
            self.items.remove(p)

    def stop_all(self) -> None:
        signal.alarm(0)
        for p in reversed(list(self.items)):
            with contextlib.suppress(Exception):
                self.stop(p, grace_s=5.0)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()


# --------------------------------------------------------------------------------------------
# the things we run


def inferline_cmd(*args: str) -> list[str]:
    return [str(VENV_BIN / "inferline"), *args]


def start_sim(procs: Procs, name: str = "sim", profile: str = "instant", extra: Sequence[str] = ()) -> Proc:
    port = free_port()
    p = procs.start(
        name,
        inferline_cmd("sim", "--profile", profile, "--port", str(port), "--max-num-seqs", "4096", *extra),
    )
    p.url = f"http://127.0.0.1:{port}"
    return procs.wait_http(p, p.url + "/health", 60)


def gateway_config(
    backends: list[dict[str, Any]], *, log_level: str = "info", model: str = "smollm2"
) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "log_level": log_level, "shutdown_grace_s": 2},
        "admission": {"queue_max_depth": 100000},
        "models": [{"name": model, "backends": backends}],
    }


def start_gateway(procs: Procs, cfg: dict[str, Any], name: str = "inferline", timeout_s: float = 90) -> Proc:
    import yaml

    port = free_port()
    path = procs.logdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    p = procs.start(name, inferline_cmd("serve", "--config", str(path), "--port", str(port)))
    p.url = f"http://127.0.0.1:{port}"
    return procs.wait_http(p, p.url + "/ready", timeout_s)


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


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


_LOOP: asyncio.AbstractEventLoop | None = None


def run_async(coro: Any) -> Any:
    global _LOOP
    if _LOOP is None:
        _LOOP = new_loop()
    return _LOOP.run_until_complete(coro)


@dataclass
class Measured:
    summary: dict[str, Any]
    wall_s: float
    cpu: dict[str, float]  # process name -> CPU seconds / wall seconds (1.0 = one core)
    chunks: int = 0  # content chunks received by the generator in successful requests
    cpu_s: dict[str, float] = field(default_factory=dict)  # process name -> CPU seconds over the run
    records: list[Any] = field(default_factory=list)  # the RequestRecords (to pool several runs)
    loadavg: list[float] = field(default_factory=list)  # 1/5/15-min load average at the end


def bench(url: str, procs: Sequence[Proc], **cfg: Any) -> Measured:
    """One run of inferline.bench against url (BenchConfig fields as keywords), with CPU use of each
    process in `procs` (whole process groups) and of this process (the generator) over the run."""
    from inferline.bench import BenchConfig, run_bench

    cfg.setdefault("model", "smollm2")
    conf = BenchConfig(url=url, **cfg)
    before = {p.name: p.cpu_s() for p in procs}
    me0, t0 = self_cpu_s(), time.monotonic()
    result = run_async(run_bench(conf))
    wall = time.monotonic() - t0
    used = {p.name: p.cpu_s() - before[p.name] for p in procs}
    used["loadgen"] = self_cpu_s() - me0
    cpu = {k: round(v / wall, 3) for k, v in used.items()}
    run = result.runs[0]
    chunks = sum(len(r.chunk_s) for r in run.records if r.ok)
    return Measured(run.summary, wall, cpu, chunks, {k: round(v, 3) for k, v in used.items()}, run.records, loadavg())


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
# output


def machine() -> dict[str, Any]:
    from inferline.bench.report import machine_info

    info = machine_info()
    m = info["machine"]
    return {
        "cores": m.get("cpu_count"),
        "cpu_model": m.get("cpu_model"),
        "ram_gib": round((m.get("memory_total_kb") or 0) / 2**20, 1),
        "platform": m.get("platform"),
        "loadavg_at_start": loadavg(),
        "versions": info["versions"],
        "git": git_state(),
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and whether src/ differed from it (peers edit the tree while we run)."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
            return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    dirty = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short=12", "HEAD") or None, "src_modified": dirty.splitlines()[:20]}


def write_results(name: str, data: dict[str, Any], markdown: str, quick: bool = False) -> tuple[Path, Path]:
    """results/NAME.json and .md; a --quick smoke run writes NAME.quick.* (git-ignored) instead, so it
    never replaces the published full-run numbers."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if quick:
        name += ".quick"
    jpath = RESULTS / f"{name}.json"
    mpath = RESULTS / f"{name}.md"
    jpath.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    mpath.write_text(markdown)
    return jpath, mpath


def header(name: str, data: dict[str, Any]) -> str:
    m = data["machine"]
    v = m["versions"]
    g = m.get("git") or {}
    peers = ", ".join(f"{k} {val}" for k, val in sorted(data.get("peer_versions", {}).items()) if val)
    return (
        f"# {name}\n\n"
        f"{data['date']} · mode `{data['mode']}` · {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM · "
        f"load average at start {m['loadavg_at_start']} · inferline {v.get('inferline')} "
        f"(commit {g.get('commit')}{', src/ modified' if g.get('src_modified') else ''}), "
        f"Python {v.get('python')}" + (f" · {peers}" if peers else "") + "\n\n"
    )


def md_table(cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def rich_table(title: str, cols: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None) -> Table:
    t = Table(title=title, header_style="bold", caption=caption)
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*(fmt(c) for c in r))
    return t


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def python_version() -> str:
    return platform.python_version()


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
