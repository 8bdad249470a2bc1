"""Run the gateway under uvicorn (uvloop + httptools) with draining on SIGTERM."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

from inferline.config import InferlineConfig

from .app import Gateway, build_app

log = logging.getLogger("inferline.gateway")


class _DrainingServer(uvicorn.Server):
    """uvicorn stops accepting on SIGTERM and waits for open requests; we add the in-band deadline."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self._gateway = gateway

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self._gateway.begin_drain()
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after shutting down (exit 143); a completed drain is a clean exit.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list) and sig == signal.SIGTERM:
            captured.clear()

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets=sockets)  # type: ignore[arg-type]
        if self.started:
            host, port = self.config.host, self.config.port
            for server in self.servers:
                for sock in server.sockets:
                    port = sock.getsockname()[1]
            models = ", ".join(m.name for m in self._gateway.config.models)
            log.info("serving %s on http://%s:%d/v1 (metrics on /metrics, readiness on /ready)", models, host, port)
            print(f"inferline: ready on http://{host}:{port}/v1", file=sys.stderr, flush=True)


def _listen_socket(host: str, port: int, send_buffer_bytes: int) -> socket.socket:
    """The listening socket, made here so accepted connections inherit a bounded SO_SNDBUF."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror)
        sys.exit(1)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def run_gateway(config: InferlineConfig) -> None:
    configure_logging(config.server.log_level)
    gateway, app = build_app(config)
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we support
        loop = "asyncio"
    uv_config = uvicorn.Config(
        app,
        host=config.server.host,
        port=config.server.port,
        loop=loop,
        http="httptools",
        lifespan="on",
        access_log=config.server.access_log,
        log_config=None,
        timeout_graceful_shutdown=int(config.server.shutdown_grace_s) + 5,
        timeout_keep_alive=30,
    )
    server = _DrainingServer(uv_config, gateway)
    server.run(sockets=[_listen_socket(config.server.host, config.server.port, config.server.send_buffer_bytes)])
    if not server.started:
        sys.exit(1)
