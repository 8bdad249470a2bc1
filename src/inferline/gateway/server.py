"""Run the gateway: listen, serve it with inferline's HTTP server on uvloop, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable

from inferline import hot_path
from inferline.config import InferlineConfig
from inferline.logs import configure_logging
from inferline.net.server import HttpServer, Limits, bind_socket
from inferline.types import ASGIApp, Receive, Scope, Send

from .app import build_app
from .workers import MetricsShare

log = logging.getLogger("inferline.gateway")

_DRAIN_EXTRA_S = 5.0  # after the grace period, the app's error events need a moment to go out
_GC_THRESHOLDS = (20_000, 50, 100)  # CPython's defaults: (700, 10, 10)


def limits_of(config: InferlineConfig) -> Limits:
    s = config.server
    return Limits(
        header_timeout_s=s.header_timeout_s,
        body_timeout_s=s.body_timeout_s,
        keepalive_timeout_s=s.keepalive_timeout_s,
        max_connections=s.max_connections,
    )


def listen_error(exc: OSError, config: InferlineConfig) -> str:
    """Why the listening socket could not be made, naming the fix."""
    host, port = config.server.host, config.server.port
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is already in use on {host} (another `inferline serve`, or another program); "
            "stop it or choose a free port with --port N (or server.port in the config)"
        )
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}; use a port above 1023 with --port N"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
        return f"{host!r} is not an address of this machine; use --host 127.0.0.1, 0.0.0.0 or a local address"
    return exc.strerror or str(exc)


def check_port(config: InferlineConfig) -> None:
    """Fail fast, before waiting for engines, when the port cannot be had: one line naming the fix, exit 1."""
    host, port = config.server.host, config.server.port
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        print(f"inferline: cannot listen on {host}:{port}: {listen_error(exc, config)}", file=sys.stderr, flush=True)
        sys.exit(1)


def listen(config: InferlineConfig) -> socket.socket:
    """The listening socket, or one clear line naming the fix and exit 1 (no traceback)."""
    host, port = config.server.host, config.server.port
    try:
        return bind_socket(host, port, send_buffer_bytes=config.server.send_buffer_bytes)
    except OSError as exc:
        print(f"inferline: cannot listen on {host}:{port}: {listen_error(exc, config)}", file=sys.stderr, flush=True)
        sys.exit(1)


def raise_open_file_limit(wanted: int) -> None:
    """Let one process hold max_connections client sockets plus engine connections and files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "the open-file limit (%d) is below server.max_connections + 1024 (%d): connections beyond it fail "
            "to be accepted; raise `ulimit -n` or lower server.max_connections",
            soft,
            wanted,
        )


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we support
        return asyncio.new_event_loop()


def run_gateway(config: InferlineConfig) -> None:
    configure_logging(config.server.log_level)
    if config.server.workers > 1:
        from .workers import run_workers

        sys.exit(run_workers(config))
    sock = listen(config)
    sys.exit(serve_socket(config, sock))


def serve_socket(
    config: InferlineConfig,
    sock: socket.socket,
    worker: tuple[int, int] = (0, 1),
    metrics_dir: str | None = None,
    on_ready: Callable[[], object] | None = None,
) -> int:
    """Serve the gateway on an already listening socket until SIGTERM/SIGINT; the exit code."""
    raise_open_file_limit(config.server.max_connections + 1024)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(config, sock, worker, metrics_dir, on_ready))
    finally:
        loop.close()


async def _serve(
    config: InferlineConfig,
    sock: socket.socket,
    worker: tuple[int, int],
    metrics_dir: str | None,
    on_ready: Callable[[], object] | None,
) -> int:
    gateway, app = build_app(config, worker)
    index, workers = worker
    share: MetricsShare | None = None
    if metrics_dir is not None:
        share = MetricsShare(metrics_dir, index, gateway.metrics.registry)
        app = _metrics_of_all_workers(app, share)
    server = HttpServer(app, limits_of(config), access_log=config.server.access_log)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0
    who = f" (worker {index + 1}/{workers}, pid {os.getpid()})" if workers > 1 else ""

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: draining%s (a second signal stops at once)", signal.Signals(signum).name, who)
            gateway.begin_drain()
            server.begin_drain()
            stop.set()
        else:
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            server.force_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await server.startup()
    except RuntimeError as exc:
        if str(exc):  # an empty reason: the app has already logged the cause
            log.error("start-up failed%s: %s", who, exc)
        return 1
    await server.serve(sock)
    _tune_gc()
    snapshots = loop.create_task(share.run()) if share is not None else None
    host, port = config.server.host, sock.getsockname()[1]
    models = ", ".join(m.name for m in config.models)
    log.info(
        "serving %s on http://%s:%d/v1%s (metrics on /metrics, readiness on /ready; hot path: %s)",
        models,
        host,
        port,
        who,
        hot_path.mode,
    )
    if on_ready is not None:
        on_ready()
    elif workers == 1:
        print(f"inferline: ready on http://{host}:{port}/v1", file=sys.stderr, flush=True)
    await stop.wait()
    drained = await server.wait_drained(config.server.shutdown_grace_s + _DRAIN_EXTRA_S)
    if not drained:
        log.warning("connections still open after the grace period were closed")
    await server.close()
    await server.shutdown()
    if snapshots is not None:
        snapshots.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await snapshots
    return 0


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the request path.

    Measured at saturation (streamed requests, instant engine): collections took ~0.1 ms per request,
    a quarter of the gateway's CPU, most of it generation-2 passes re-scanning the ~70,000 objects that
    live as long as the process (modules, config, schemas, metrics). Requests themselves leave little
    cyclic garbage: reference counting frees them. So the start-up objects are frozen (never scanned
    again) and young collections run less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def _metrics_of_all_workers(app: ASGIApp, share: MetricsShare) -> ASGIApp:
    """GET /metrics answered for every worker: this one's registry now, the others' latest snapshots."""
    from prometheus_client import CONTENT_TYPE_LATEST

    headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics" and scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": share.exposition()})
            return
        await app(scope, receive, send)

    return wrapped
