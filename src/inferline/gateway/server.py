"""Run the gateway: listen, serve it with inferline's HTTP server on uvloop, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import signal
import socket
import sys

from inferline.config import InferlineConfig
from inferline.logs import configure_logging
from inferline.net.server import HttpServer, Limits, bind_socket

from .app import build_app

log = logging.getLogger("inferline.gateway")

_DRAIN_EXTRA_S = 5.0  # after the grace period, the app's error events need a moment to go out


def limits_of(config: InferlineConfig) -> Limits:
    s = config.server
    return Limits(
        header_timeout_s=s.header_timeout_s,
        body_timeout_s=s.body_timeout_s,
        keepalive_timeout_s=s.keepalive_timeout_s,
        max_connections=s.max_connections,
    )


def listen(config: InferlineConfig, reuse_port: bool = False) -> socket.socket:
    """The listening socket, or one clear line naming the fix and exit 1 (no traceback)."""
    host, port = config.server.host, config.server.port
    try:
        return bind_socket(host, port, send_buffer_bytes=config.server.send_buffer_bytes, reuse_port=reuse_port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = (
                f"port {port} is already in use on {host} (another `inferline serve`, or another program); "
                "stop it or choose a free port with --port N (or server.port in the config)"
            )
        elif exc.errno == errno.EACCES:
            why = f"no permission to listen on port {port}; use a port above 1023 with --port N"
        elif exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
            why = f"{host!r} is not an address of this machine; use --host 127.0.0.1, 0.0.0.0 or a local address"
        else:
            why = exc.strerror or str(exc)
        print(f"inferline: cannot listen on {host}:{port}: {why}", file=sys.stderr, flush=True)
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
    sock = listen(config)
    sys.exit(serve_socket(config, sock))


def serve_socket(config: InferlineConfig, sock: socket.socket, worker: str = "") -> int:
    """Serve the gateway on an already listening socket until SIGTERM/SIGINT; the exit code."""
    raise_open_file_limit(config.server.max_connections + 1024)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(config, sock, worker))
    finally:
        loop.close()


async def _serve(config: InferlineConfig, sock: socket.socket, worker: str) -> int:
    gateway, app = build_app(config)
    server = HttpServer(app, limits_of(config), access_log=config.server.access_log)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: draining (a second signal stops at once)", signal.Signals(signum).name)
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
        log.error("start-up failed: %s", exc)
        return 1
    await server.serve(sock)
    host, port = config.server.host, sock.getsockname()[1]
    models = ", ".join(m.name for m in config.models)
    log.info("serving %s on http://%s:%d/v1%s (metrics on /metrics, readiness on /ready)", models, host, port, worker)
    if not worker:
        print(f"inferline: ready on http://{host}:{port}/v1", file=sys.stderr, flush=True)
    await stop.wait()
    drained = await server.wait_drained(config.server.shutdown_grace_s + _DRAIN_EXTRA_S)
    if not drained:
        log.warning("connections still open after the grace period were closed")
    await server.close()
    await server.shutdown()
    return 0
