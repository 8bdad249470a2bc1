"""`server.workers` > 1: N gateway processes on one port (SO_REUSEPORT), started and watched by a supervisor.

The kernel spreads new connections over the workers' listening sockets. What the workers share and
what each keeps (docs/performance.md has the argument):

- rate limits and budgets: shared through Redis (`limits.store: redis`); with limits set in the
  memory store each worker would allow the full limit, so that is refused at start-up;
- engine slots and KV budget: partitioned. Worker i of N admits at most its quota of each engine's
  max_num_seqs (the quotas add up to max_num_seqs) and reserves at most quota/max_num_seqs of its KV
  budget, while still reading the engine's own (global) counts: together the workers never send an
  engine more than one process would (admit.has_room);
- queues: one per worker, each holding 1/N of admission.queue_max_depth; ordering (priority, aging)
  holds within a worker, and since each worker dispatches only into its own quota, no worker's queue
  can starve another's;
- prefix affinity: per worker. It is a routing hint, never an admission decision: a prefix may be
  cached on up to N engines instead of one (a lower hit rate, never an overload);
- metrics: each worker keeps its own registry (no cost per request) and writes a snapshot of it to a
  shared folder every second; `/metrics` on any worker answers its own registry plus the others'
  latest snapshots, counters and histograms summed, gauges one series per worker (label `worker`);
- the response cache (memory store) is per worker: a miss where another worker has the answer.

The supervisor forwards SIGTERM/SIGINT to every worker (each drains as a single process does), and
restarts a worker that dies unexpectedly (at most 5 times a minute; then it stops them all, exit 1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from inferline.config import BackendKind, InferlineConfig

log = logging.getLogger("inferline.gateway")

_MAX_RESTARTS_PER_MIN = 5


def check_workers(config: InferlineConfig) -> str | None:
    """Why this config cannot run with several workers, as one line naming the fix; None when it can."""
    n = config.server.workers
    embedded = [b.name for m in config.models for b in m.backends if b.kind is BackendKind.EMBEDDED]
    if embedded:
        return (
            f"server.workers is {n}, but backend {embedded[0]} is the embedded engine, which lives in one process; "
            "run it as its own process (`inferline engine`, then kind: llamacpp with its url) or use --workers 1"
        )
    lim = config.limits
    limited = not lim.anonymous_limits.unlimited or any(not k.limits.unlimited for k in lim.keys)
    if limited and lim.store == "memory":
        return (
            f"server.workers is {n}, but rate limits and budgets are kept in memory (limits.store: memory), so each "
            "worker would allow the full limit; set limits.store: redis with limits.redis_url, or use --workers 1"
        )
    return None


def worker_config(config: InferlineConfig, n: int) -> InferlineConfig:
    """Each worker's config: 1/n of the queue (the engine quotas are applied in admit.has_room)."""
    depth = -(-config.admission.queue_max_depth // n)
    return config.model_copy(update={"admission": config.admission.model_copy(update={"queue_max_depth": depth})})


def _reserve_port(host: str, port: int) -> socket.socket:
    """Fail like a single process would when the port is taken, and hold it (SO_REUSEPORT, not listening,
    so it takes no connections) while the workers bind theirs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))  # without SO_REUSEPORT: fails if anything at all holds the port
        port = probe.getsockname()[1]
    finally:
        probe.close()
    hold = socket.socket(family, socket.SOCK_STREAM)
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    hold.bind((host, port))
    return hold


def run_workers(config: InferlineConfig) -> int:
    """Supervise config.server.workers gateway processes; the exit code."""
    from .server import listen_error, serve_socket

    n = config.server.workers
    why = check_workers(config)
    if why:
        print(f"inferline: {why}", file=sys.stderr, flush=True)
        return 1
    small = sorted({b.name for m in config.models for b in m.backends if b.max_num_seqs < n})
    if small:
        log.warning(
            "backend(s) %s have max_num_seqs below server.workers (%d): each worker still sends them one request "
            "at a time, so together up to %d",
            ", ".join(small),
            n,
            n,
        )
    host = config.server.host
    try:
        hold = _reserve_port(host, config.server.port)
    except OSError as exc:
        print(f"inferline: cannot listen on {host}:{config.server.port}: {listen_error(exc, config)}", file=sys.stderr)
        return 1
    port = hold.getsockname()[1]
    config = worker_config(config.model_copy(update={"server": config.server.model_copy(update={"port": port})}), n)
    metrics_dir = tempfile.mkdtemp(prefix="inferline-metrics-")
    ready_r, ready_w = os.pipe()

    def spawn(index: int, ready_fd: int | None) -> int:
        pid = os.fork()
        if pid:
            return pid
        # the worker
        code = 1
        try:
            if ready_fd is not None:
                os.close(ready_r)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            from inferline.net.server import bind_socket

            sock = bind_socket(host, port, send_buffer_bytes=config.server.send_buffer_bytes, reuse_port=True)
            code = serve_socket(
                config,
                sock,
                worker=(index, n),
                metrics_dir=metrics_dir,
                on_ready=None if ready_fd is None else lambda: os.write(ready_fd, b"r"),
            )
        except BaseException:
            log.exception("worker %d failed", index + 1)
        finally:
            logging.shutdown()
            os._exit(code)

    pids: dict[int, int] = {}  # pid -> worker index
    for i in range(n):
        pids[spawn(i, ready_w)] = i
    os.close(ready_w)
    stopping = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # One line when every worker serves (or one has failed to start: the exit status says which).
    ready = 0
    while ready < n:
        try:
            got = os.read(ready_r, n)
        except InterruptedError:
            continue
        if not got:
            break
        ready += len(got)
    os.close(ready_r)
    hold.close()
    if ready == n:
        log.info("%d workers serving on http://%s:%d/v1", n, host, port)
        print(f"inferline: ready on http://{host}:{port}/v1 ({n} workers)", file=sys.stderr, flush=True)
    restarts: deque[float] = deque()
    worst = 0
    while pids:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = pids.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping or ready < n:
            worst = max(worst, 1 if code else 0)
            if ready < n and not stopping:
                forward(signal.SIGTERM, None)
            continue
        now = time.monotonic()
        restarts.append(now)
        while restarts and now - restarts[0] > 60:
            restarts.popleft()
        if len(restarts) > _MAX_RESTARTS_PER_MIN:
            log.error("worker %d exited (%d) and workers keep dying: stopping all", index + 1, code)
            forward(signal.SIGTERM, None)
            worst = 1
            continue
        log.error("worker %d exited unexpectedly (%d); restarting it", index + 1, code)
        pids[spawn(index, None)] = index
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return worst


class MetricsShare:
    """One worker's side of the shared /metrics: snapshots out, every worker's series merged in."""

    PERIOD_S = 1.0

    def __init__(self, folder: str, index: int, registry: Any) -> None:
        self._folder = Path(folder)
        self._index = index
        self._registry = registry
        self._path = self._folder / f"worker-{index + 1}.prom"

    async def run(self) -> None:
        import asyncio

        while True:
            self.write()
            await asyncio.sleep(self.PERIOD_S)

    def write(self) -> None:
        from prometheus_client import generate_latest

        tmp = self._path.with_suffix(".tmp")
        tmp.write_bytes(generate_latest(self._registry))
        os.replace(tmp, self._path)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        texts = {str(self._index + 1): generate_latest(self._registry).decode()}
        for f in sorted(self._folder.glob("worker-*.prom")):
            worker = f.stem.removeprefix("worker-")
            if worker not in texts:
                try:
                    texts[worker] = f.read_text()
                except OSError:
                    continue
        return merge_expositions(texts)


def merge_expositions(texts: dict[str, str]) -> bytes:
    """Several processes' Prometheus text as one: counters, histograms and summaries summed per series;
    gauges (state, not totals) kept per process with a `worker` label; `_created` the earliest."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.samples import Sample

    families: dict[str, Metric] = {}
    series: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]] = {}
    for worker, text in texts.items():
        for fam in text_string_to_metric_families(text):
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                series[fam.name] = {}
            acc = series[fam.name]
            created = fam.name.endswith("_created")
            per_worker = fam.type in ("gauge", "info", "stateset", "unknown") and not created
            for s in fam.samples:
                labels = {**s.labels, "worker": worker} if per_worker else dict(s.labels)
                key = (s.name, tuple(sorted(labels.items())))
                have = acc.get(key)
                if have is None:
                    acc[key] = [s.name, labels, s.value]
                elif created:
                    have[2] = min(have[2], s.value)
                else:
                    have[2] += s.value
    for name, fam in families.items():
        fam.samples = [Sample(n, labels, value) for n, labels, value in series[name].values()]

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)


__all__ = ["MetricsShare", "check_workers", "merge_expositions", "run_workers", "worker_config"]
