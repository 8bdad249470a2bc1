"""account: runs for every request — metrics, and the one structured log line. Never logs prompts or keys."""

from __future__ import annotations

import logging
import time
from typing import Any

from inferline.logs import request_line
from inferline.metrics import GatewayMetrics

from .context import RequestContext

log = logging.getLogger("inferline.request")

# Labelled children by (metric, label values): prometheus_client's labels() validates and locks on every
# call (~2.5 µs, four times per request); the set of label values is small and fixed.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: Any) -> Any:
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*(str(v) for v in values))
    return child


def account(ctx: RequestContext, metrics: GatewayMetrics) -> None:
    end_ns = time.monotonic_ns()
    if not ctx.completion_tokens and ctx.content_chunks:
        # No usage chunk (cancelled, interrupted): one content chunk is one token on vLLM and llama.cpp.
        ctx.completion_tokens = ctx.content_chunks
    model = ctx.model or (ctx.parsed.model if ctx.parsed else "")
    backend = ctx.backend or "none"
    status = ctx.status or (ctx.error.status if ctx.error else 500)
    _child(metrics.requests, model or "none", backend, status, ctx.outcome).inc()
    if ctx.parsed is not None and model:
        _child(metrics.e2e, model).observe((end_ns - ctx.started_ns) / 1e9)
        if ctx.backend:
            if ctx.prompt_tokens:
                _child(metrics.prompt_tokens, model, backend).inc(ctx.prompt_tokens)
            if ctx.completion_tokens:
                _child(metrics.generation_tokens, model, backend).inc(ctx.completion_tokens)
    if log.isEnabledFor(logging.INFO):
        record = {
            "event": "request",
            "id": ctx.request_id,
            "model": model or None,
            "key": ctx.principal or None,
            "backend": ctx.backend or None,
            "status": status,
            "outcome": ctx.outcome.value,
            "stream": ctx.parsed.stream if ctx.parsed else None,
            "attempts": ctx.attempts,
            "prompt_tokens": ctx.prompt_tokens,
            "completion_tokens": ctx.completion_tokens,
            "finish_reason": ctx.finish_reason,
            "ttft_ms": round((ctx.first_token_ns - ctx.started_ns) / 1e6, 1) if ctx.first_token_ns else None,
            "duration_ms": round((end_ns - ctx.started_ns) / 1e6, 1),
        }
        if ctx.error is not None:
            record["error"] = ctx.error.message
        request_line(record, log)  # == log.info("%s", json), written in batches (inferline.logs)
