"""ops: the operational endpoints — /health, /ready, /metrics, /backends, /queues, /v1/models[/{id}]."""

from __future__ import annotations

import time

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inferline.backends.pool import BackendPool
from inferline.config import ModelConfig
from inferline.errors import ModelNotFound, error_body, error_headers
from inferline.metrics import GatewayMetrics
from inferline.openapi import openapi_json
from inferline.types import Receive, Scope, Send

from .canary import Canaries
from .estimates import OutputEstimates
from .queue import Queues
from .supervisor import Supervisor


class Ops:
    def __init__(
        self,
        models: list[ModelConfig],
        pool: BackendPool,
        queues: Queues,
        estimates: OutputEstimates,
        supervisor: Supervisor,
        metrics: GatewayMetrics,
        canaries: Canaries,
    ) -> None:
        self._models = models
        self._pool = pool
        self._queues = queues
        self._estimates = estimates
        self._supervisor = supervisor
        self._metrics = metrics
        self._canaries = canaries

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "ok"})

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        models = self._pool.ready_models()
        draining = self._supervisor.draining
        ok = all(models.values()) and not draining
        status = "draining" if draining else ("ready" if ok else "not_ready")
        await send_json(send, 200 if ok else 503, {"status": status, "models": models})

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = generate_latest(self._metrics.registry)
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def backends(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"backends": self._pool.snapshot(), "canaries": self._canaries.snapshot()})

    async def canaries(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Each canary's split and its live comparison (the same as /backends' `canaries`)."""
        await send_json(send, 200, {"canaries": self._canaries.snapshot()})

    async def queues(self, scope: Scope, receive: Receive, send: Send) -> None:
        waiting = [
            {
                "model": m.name,
                "waiting": self._queues.depth(m.name),
                "expected_output_tokens": round(self._estimates.expected(m.name)),
            }
            for m in self._models
        ]
        await send_json(send, 200, {"queues": waiting})

    async def openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The OpenAPI 3.1 document of the gateway's own endpoints (src/inferline/openapi.py)."""
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": openapi_json(tuple(m.name for m in self._models))})

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"object": "list", "data": self._model_cards()})

    async def model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /v1/models/{id} (the openai SDK's models.retrieve)."""
        model_id = scope["path"].rstrip("/").removeprefix("/v1/models/")
        card = next((c for c in self._model_cards() if c["id"] == model_id), None)
        if card is None:
            exc = ModelNotFound(f"model {model_id!r} does not exist", param="model")
            await send({"type": "http.response.start", "status": exc.status, "headers": error_headers(exc)})
            await send({"type": "http.response.body", "body": error_body(exc)})
            return
        await send_json(send, 200, card)

    def _model_cards(self) -> list[dict[str, object]]:
        created = int(time.time())
        cards: list[dict[str, object]] = []
        for m in self._models:
            ctx_len = m.context_tokens or next(
                (s.backend.context_tokens for s in self._pool.by_model[m.name] if s.backend.context_tokens), None
            )
            card: dict[str, object] = {"id": m.name, "object": "model", "created": created, "owned_by": "inferline"}
            if ctx_len:
                card["max_model_len"] = ctx_len
            cards.append(card)
        return cards


async def send_json(send: Send, status: int, obj: object) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": orjson.dumps(obj)})
