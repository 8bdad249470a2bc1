"""app: builds the gateway once from its config — stages, pool, routes — and serves it as an ASGI app.

Each stage gets only its own config section. Everything is built here, once; per request only the
pipeline runs (gateway/pipeline.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from inferline.backends.pool import BackendPool
from inferline.cache import create_response_cache
from inferline.config import InferlineConfig
from inferline.debug_metrics import register_debug_metrics
from inferline.errors import GatewayError, MethodNotAllowed, NotFound, error_body, error_headers
from inferline.limits import Limiter
from inferline.limits.store_metrics import register_store_metrics
from inferline.metrics import GatewayMetrics
from inferline.types import ASGIApp, Receive, Scope, Send

from .account import Accountant
from .admit import Admitter
from .authenticate import Authenticator
from .cached import CachedAnswers
from .canary import Canaries
from .estimates import OutputEstimates
from .ops import Ops
from .pipeline import Pipeline
from .queue import Queues
from .relay import Relay
from .route import Router, build_picker, prefix_key
from .supervisor import Supervisor
from .upstream import Upstream

log = logging.getLogger("inferline.gateway")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class _Route:
    methods: frozenset[str]
    handler: Handler


class Gateway:
    """One gateway: config in, ASGI callable out."""

    def __init__(self, config: InferlineConfig, worker: tuple[int, int] = (0, 1)) -> None:
        self.config = config
        models, routing, admission = config.models, config.routing, config.admission
        self.metrics = metrics = GatewayMetrics()
        self.pool = BackendPool(models, routing, metrics, worker)
        self.limiter = Limiter.from_config(config.limits)
        names = [m.name for m in models]
        model_metrics = {m: metrics.for_model(m) for m in names}
        estimates = OutputEstimates(names, admission.default_output_tokens)
        self.queues = Queues(
            self.pool.by_model,
            admission,
            routing.metrics_max_age_s,
            model_metrics,
            build_picker(routing, metrics),
            estimates,
            lambda body: prefix_key(body, routing),
        )
        self.pool.on_change = self.queues.dispatch_all
        self.supervisor = Supervisor(config.server, routing.request_timeout_s)
        self.canaries = Canaries(models, metrics)
        cache = create_response_cache(config.cache)
        self.cached = CachedAnswers(cache, config.cache, metrics)
        # The limit store's and the cache's health (circuit breakers), and the loop's task count (leaks).
        register_store_metrics(metrics.registry, self.limiter.store, cache)
        register_debug_metrics(metrics.registry)
        self.pipeline = Pipeline(
            max_body_bytes=config.server.max_body_bytes,
            request_timeout_s=routing.request_timeout_s,
            shutdown_grace_s=config.server.shutdown_grace_s,
            authenticator=Authenticator(self.limiter, admission),
            cached=self.cached,
            admitter=Admitter(self.limiter, estimates),
            router=Router({m.name: [m.name, *m.fallback] for m in models}, self.queues, routing, self.canaries),
            queues=self.queues,
            upstream=Upstream({m.name: m.context_tokens for m in models}),
            relay=Relay(routing.first_token_timeout_s),
            accountant=Accountant(self.limiter, estimates, metrics),
            supervisor=self.supervisor,
            in_flight={m: mm.in_flight for m, mm in model_metrics.items()},
        )
        ops = Ops(models, self.pool, self.queues, estimates, self.supervisor, metrics, self.canaries)
        get, post = frozenset({"GET"}), frozenset({"POST"})
        self._routes: dict[str, _Route] = {
            "/v1/chat/completions": _Route(post, self._chat),
            "/v1/completions": _Route(post, self._completions),
            "/v1/models": _Route(get, ops.models),
            "/v1/models/{id}": _Route(get, ops.model),
            "/health": _Route(get, ops.health),
            "/ready": _Route(get, ops.ready),
            "/metrics": _Route(get, ops.metrics),
            "/backends": _Route(get, ops.backends),
            "/queues": _Route(get, ops.queues),
            "/canaries": _Route(get, ops.canaries),
            "/openapi.json": _Route(get, ops.openapi),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"].rstrip("/") or "/"
            route = self._routes.get(path)
            if route is None and path.startswith("/v1/models/"):
                route = self._routes["/v1/models/{id}"]
            if route is None:
                exc: GatewayError = NotFound(
                    f"no route {scope['method']} {scope['path']}; inferline serves POST /v1/chat/completions, "
                    "POST /v1/completions, GET /v1/models, /health, /ready, /metrics, /backends, /queues, "
                    "/canaries, /openapi.json"
                )
                await _send_error(send, exc, [])
            elif scope["method"] not in route.methods:
                allowed = ", ".join(sorted(route.methods))
                exc = MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use {allowed}")
                await _send_error(send, exc, [(b"allow", allowed.encode())])
            else:
                await route.handler(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.pipeline.handle(scope, receive, send, "chat")

    async def _completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.pipeline.handle(scope, receive, send, "completions")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    # One line that names the cause (e.g. the model is missing); the traceback only at debug level.
                    log.error("start-up failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
                    await send({"type": "lifespan.startup.failed", "message": ""})  # logged above, once
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await self.pool.start()
        self.supervisor.start()
        for model, ok in self.pool.ready_models().items():
            if not ok:
                log.warning("model %s has no ready backend yet", model)

    async def shutdown(self) -> None:
        await self.limiter.aclose()
        await self.cached.aclose()
        await self.supervisor.stop()
        await self.pool.close()

    def begin_drain(self) -> None:
        """SIGTERM: stop taking requests; in-flight ones get server.shutdown_grace_s (gateway/supervisor.py)."""
        self.supervisor.begin_drain()


async def _send_error(send: Send, exc: GatewayError, extra: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": exc.status, "headers": error_headers(exc) + extra})
    await send({"type": "http.response.body", "body": error_body(exc)})


def build_app(config: InferlineConfig, worker: tuple[int, int] = (0, 1)) -> tuple[Gateway, ASGIApp]:
    """The gateway and the ASGI callable to serve (CORS wrapped around it when configured); `worker` is this
    process's (index, count) among the gateway's worker processes."""
    gateway = Gateway(config, worker)
    app: ASGIApp = gateway
    if config.server.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app = CORSMiddleware(
            gateway,
            allow_origins=config.server.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-inferline-backend", "x-inferline-model", "x-request-id", "retry-after"],
        )
    return gateway, app


__all__ = ["Gateway", "build_app"]
