"""The gateway's ASGI app: routes, lifespan (backends up/down), draining, disconnect and stall watch."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inferline.backends.pool import BackendPool
from inferline.cache import as_sse_chunks, cache_key, cacheable, create_response_cache
from inferline.config import InferlineConfig
from inferline.errors import (
    BackendUnavailable,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    Outcome,
    PayloadTooLarge,
    ShuttingDown,
    UpstreamTimeout,
    error_body,
    error_headers,
)
from inferline.limits import Limiter
from inferline.metrics import GatewayMetrics, ModelMetrics
from inferline.types import ASGIApp, Receive, Scope, Send

from .account import account
from .context import ParsedRequest, RequestContext
from .parse import parse_request
from .relay import JSON_HEADERS, SSE_HEADERS, Relay, end_stream_with_error, route_headers
from .route import Router

log = logging.getLogger("inferline.gateway")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class _Route:
    methods: frozenset[str]
    handler: Handler


class _ClientGone(Exception):
    """The client disconnected while we were still reading its request."""


class Gateway:
    """One gateway: config in, ASGI callable out. Everything is built once, in __init__ and lifespan."""

    def __init__(self, config: InferlineConfig) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.pool = BackendPool(config, self.metrics)
        self.router = Router(config, self.pool, self.metrics)
        self.limiter = Limiter.from_config(config.limits)
        self._cache_cfg = config.cache
        self.cache = create_response_cache(config.cache)
        self.pool.on_change = self.router.dispatch_all
        self.relay = Relay(config.routing, self.metrics, {m.name: m.context_tokens for m in config.models})
        self._model_metrics: dict[str, ModelMetrics] = {m.name: self.metrics.for_model(m.name) for m in config.models}
        self._active: dict[RequestContext, asyncio.Task[None]] = {}
        self._draining = False
        self._background: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-{int(time.time()) & 0xFFFFFF:x}"
        self._routes: dict[str, _Route] = {
            "/v1/chat/completions": _Route(frozenset({"POST"}), self._chat),
            "/v1/completions": _Route(frozenset({"POST"}), self._completions),
            "/v1/models": _Route(frozenset({"GET"}), self._models),
            "/v1/models/{id}": _Route(frozenset({"GET"}), self._model),
            "/health": _Route(frozenset({"GET"}), self._health),
            "/ready": _Route(frozenset({"GET"}), self._ready),
            "/metrics": _Route(frozenset({"GET"}), self._metrics),
            "/backends": _Route(frozenset({"GET"}), self._backends),
            "/queues": _Route(frozenset({"GET"}), self._queues),
        }

    # -- ASGI entry ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"].rstrip("/") or "/"
            route = self._routes.get(path)
            if route is None and path.startswith("/v1/models/"):
                route = self._routes["/v1/models/{id}"]
            try:
                if route is None:
                    raise NotFound(
                        f"no route {scope['method']} {scope['path']}; inferline serves POST /v1/chat/completions, "
                        "POST /v1/completions, GET /v1/models, /health, /ready, /metrics, /backends, /queues"
                    )
                if scope["method"] not in route.methods:
                    raise MethodNotAllowed(
                        f"{scope['method']} is not allowed on {scope['path']}; use {', '.join(sorted(route.methods))}"
                    )
            except GatewayError as exc:
                await _send_error(
                    send, exc, extra=[(b"allow", ", ".join(sorted(route.methods)).encode())] if route else []
                )
                return
            await route.handler(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

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
        self._background.append(asyncio.create_task(self._stall_watch(), name="stall-watch"))
        for model, ok in self.pool.ready_models().items():
            if not ok:
                log.warning("model %s has no ready backend yet", model)

    async def shutdown(self) -> None:
        await self.limiter.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        for t in self._background:
            t.cancel()
        for t in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.pool.close()

    # -- draining (SIGTERM) ---------------------------------------------------------------------
    def begin_drain(self) -> None:
        """Stop taking requests; in-flight ones get shutdown_grace_s, then end with an error event."""
        if self._draining:
            return
        self._draining = True
        grace = self.config.server.shutdown_grace_s
        log.info("draining: %d request(s) in flight, %.0fs grace", len(self._active), grace)
        loop = asyncio.get_running_loop()
        loop.call_later(grace, self._cancel_all, Outcome.SHUTDOWN)

    def _cancel_all(self, reason: Outcome) -> None:
        if self._active:
            log.warning("grace period over: cancelling %d request(s)", len(self._active))
        for ctx, task in list(self._active.items()):
            ctx.cancel_reason = reason
            task.cancel()

    async def _stall_watch(self) -> None:
        limit_ns = int(self.config.server.client_stall_timeout_s * 1e9)
        period = min(1.0, self.config.server.client_stall_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic_ns()
            for ctx, task in list(self._active.items()):
                if ctx.sending_since_ns and now - ctx.sending_since_ns > limit_ns:
                    ctx.cancel_reason = Outcome.CLIENT_STALLED
                    task.cancel()

    # -- inference ------------------------------------------------------------------------------
    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._infer(scope, receive, send, "chat")

    async def _completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._infer(scope, receive, send, "completions")

    async def _infer(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        ctx = RequestContext(request_id=f"req-{self._id_prefix}-{next(self._ids)}")
        task = asyncio.current_task()
        assert task is not None
        try:
            await self._pipeline(ctx, scope, receive, send, kind, task)
        except GatewayError as exc:
            await self._fail(ctx, send, exc)
        except TimeoutError:
            limit = self.config.routing.request_timeout_s
            await self._fail(
                ctx, send, UpstreamTimeout(f"the request exceeded routing.request_timeout_s ({limit:.0f}s)")
            )
        except _ClientGone:
            ctx.outcome, ctx.status = Outcome.CLIENT_CANCELLED, 499
        except asyncio.CancelledError:
            reason = ctx.cancel_reason
            if reason is None:
                raise  # the server itself is cancelling us: let it
            task.uncancel()
            if reason is Outcome.SHUTDOWN:
                grace = self.config.server.shutdown_grace_s
                await self._fail(
                    ctx,
                    send,
                    ShuttingDown(
                        f"the gateway shut down after a {grace:.0f}s grace period; the answer is incomplete",
                        retry_after_s=1,
                    ),
                )
            ctx.outcome = reason
            if not ctx.status:
                ctx.status = 499  # nginx's "client closed request": the client left before an answer
        except Exception:  # last resort: a bug of ours is a 500 with a request id, logged once
            log.exception("internal error in %s", ctx.request_id)
            await self._fail(ctx, send, GatewayError(f"internal error (request id {ctx.request_id})"))
            ctx.outcome = Outcome.INTERNAL
        finally:
            if ctx.watcher is not None:
                ctx.watcher.cancel()
            self._active.pop(ctx, None)
            if ctx.in_flight_counted and ctx.parsed is not None:
                self._model_metrics[ctx.parsed.model].in_flight.dec()
            if ctx.reservation is not None:
                self.limiter.release_soon(ctx.reservation, ctx.tokens_used())
            account(ctx, self.metrics)

    async def _pipeline(
        self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send, kind: str, task: asyncio.Task[None]
    ) -> None:
        """parse -> authenticate -> (cache) -> admit -> queue -> route -> relay. Raises GatewayError."""
        if self._draining:
            raise ShuttingDown("the gateway is shutting down; retry on another replica", retry_after_s=1)
        raw = await _read_body(scope, receive, self.config.server.max_body_bytes)
        principal = self.limiter.authenticate(_header(scope, b"authorization"))
        ctx.principal = principal.name
        ctx.parsed = parsed = parse_request(raw, kind)
        self.router.chain(parsed.model)  # 404 before anything waits
        class_offset_s = self._priority_offset(scope, principal.priority_class)
        self._active[ctx] = task
        ctx.watcher = asyncio.create_task(_watch_disconnect(receive, ctx, task))
        self._model_metrics[parsed.model].in_flight.inc()
        ctx.in_flight_counted = True

        cache_key = self._cache_key(parsed, principal.name)
        if cache_key is not None and self.cache is not None and not self._cache_cfg.fallback_only:
            hit = await self.cache.get(cache_key)
            if hit is not None:
                await self._reply_cached(ctx, parsed, hit, send, "hit")
                return

        expected_output = parsed.max_tokens or self.router.expected_output_tokens(parsed.model)
        ctx.reservation = await self.limiter.admit(principal, int(parsed.prompt_tokens_estimate + expected_output))
        ctx.extra_headers = ctx.reservation.headers()

        now = time.monotonic()
        key = self.router.queues[parsed.model].key(parsed.prompt_tokens_estimate + expected_output, class_offset_s, now)
        ctx.priority = int(key - now)  # vLLM: lower runs first; the same order as our queue
        async with asyncio.timeout(self.config.routing.request_timeout_s):
            try:
                target = await self.router.acquire(
                    parsed.model,
                    key,
                    self.router.prefix_key(parsed.body),
                    kv_tokens=int(parsed.prompt_tokens_estimate + expected_output),
                )
            except BackendUnavailable:
                # The last step of the fallback chain: an identical answer served before, if we have one.
                if cache_key is not None and self.cache is not None:
                    hit = await self.cache.get(cache_key)
                    if hit is not None:
                        await self._reply_cached(ctx, parsed, hit, send, "fallback")
                        return
                raise
            await self.relay.serve(ctx, parsed, target, self.router, send, self._model_metrics)
        self.router.observe_output(ctx.model, ctx.completion_tokens)
        if cache_key is not None and self.cache is not None and ctx.response_body is not None:
            await self.cache.put(cache_key, ctx.response_body)

    async def _fail(self, ctx: RequestContext, send: Send, exc: GatewayError) -> None:
        """Before the first byte an error is a response; after it, an SSE error event ends the stream."""
        ctx.error, ctx.outcome = exc, exc.outcome
        with contextlib.suppress(Exception):  # the client may be gone: nothing left to tell it
            if ctx.response_started:
                if not ctx.response_complete:
                    await end_stream_with_error(ctx, send, exc)
            else:
                ctx.status = exc.status
                await _send_error(send, exc, request_id=ctx.request_id)

    def _cache_key(self, parsed: ParsedRequest, scope: str) -> str | None:
        if self.cache is None or not cacheable(parsed.body, self._cache_cfg.only_deterministic):
            return None
        return cache_key(parsed.body, parsed.kind, scope=scope)

    async def _reply_cached(
        self, ctx: RequestContext, parsed: ParsedRequest, body: bytes, send: Send, how: str
    ) -> None:
        ctx.model, ctx.backend, ctx.status = parsed.model, "cache", 200
        ctx.outcome = Outcome.OK if how == "hit" else Outcome.CACHE_FALLBACK
        headers = [(b"x-inferline-cache", how.encode()), *route_headers(ctx)]
        if parsed.stream:
            chunks = as_sse_chunks(body, "chat" if parsed.kind == "chat" else "completions", parsed.include_usage)
            ctx.response_started = True
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": False})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS + headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        ctx.response_complete = True

    def _priority_offset(self, scope: Scope, key_class: str | None) -> float:
        """The request's priority class as seconds added to its queue key: the x-inferline-priority
        header, else the API key's class, else the default."""
        classes = self.config.admission.priority_classes
        header = _header(scope, b"x-inferline-priority")
        name = header.decode("latin-1").strip().lower() if header else key_class or self.config.admission.default_class
        offset = classes.get(name)
        if offset is None:
            raise InvalidRequest(
                f"unknown priority class {name!r} in x-inferline-priority; known: {', '.join(sorted(classes))}",
                param="x-inferline-priority",
            )
        return offset

    # -- operational endpoints ------------------------------------------------------------------
    async def _model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /v1/models/{id} (the openai SDK's models.retrieve)."""
        model_id = scope["path"].rstrip("/").removeprefix("/v1/models/")
        card = next((c for c in self._model_cards() if c["id"] == model_id), None)
        if card is None:
            exc = ModelNotFound(f"model {model_id!r} does not exist", param="model")
            await _send_error(send, exc)
            return
        await _send_json(send, 200, card)

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_json(send, 200, {"object": "list", "data": self._model_cards()})

    def _model_cards(self) -> list[dict[str, object]]:
        created = int(time.time())
        cards: list[dict[str, object]] = []
        for m in self.config.models:
            ctx_len = m.context_tokens or next(
                (s.backend.context_tokens for s in self.pool.by_model[m.name] if s.backend.context_tokens),
                None,
            )
            card: dict[str, object] = {
                "id": m.name,
                "object": "model",
                "created": created,
                "owned_by": "inferline",
            }
            if ctx_len:
                card["max_model_len"] = ctx_len
            cards.append(card)
        return cards

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_json(send, 200, {"status": "ok"})

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        models = self.pool.ready_models()
        ok = all(models.values()) and not self._draining
        status = "draining" if self._draining else ("ready" if ok else "not_ready")
        await _send_json(send, 200 if ok else 503, {"status": status, "models": models})

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = generate_latest(self.metrics.registry)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _backends(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_json(send, 200, {"backends": self.pool.snapshot()})

    async def _queues(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_json(
            send,
            200,
            {
                "queues": [
                    {
                        "model": m,
                        "waiting": len(q),
                        "expected_output_tokens": round(self.router.expected_output_tokens(m)),
                    }
                    for m, q in self.router.queues.items()
                ]
            },
        )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            v: bytes = value
            return v
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"request body is {int(value)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _watch_disconnect(receive: Receive, ctx: RequestContext, task: asyncio.Task[None]) -> None:
    """Cancel the request's task the moment its client goes away (which closes the engine's stream)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not ctx.response_complete and ctx.cancel_reason is None:
                ctx.cancel_reason = Outcome.CLIENT_CANCELLED
                task.cancel()
            return


async def _send_json(send: Send, status: int, obj: object) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": orjson.dumps(obj)})


async def _send_error(
    send: Send,
    exc: GatewayError,
    request_id: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = error_headers(exc) + (extra or [])
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": error_body(exc)})


def build_app(config: InferlineConfig) -> tuple[Gateway, ASGIApp]:
    """The gateway and the ASGI callable to serve (CORS wrapped around it when configured)."""
    gateway = Gateway(config)
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
