"""account: runs for every request — metrics, and the one structured log line. Never logs prompts or keys."""

from __future__ import annotations

import logging
import time

import orjson

from inferline.metrics import GatewayMetrics

from .context import RequestContext

log = logging.getLogger("inferline.request")


def account(ctx: RequestContext, metrics: GatewayMetrics) -> None:
    end_ns = time.monotonic_ns()
    if not ctx.completion_tokens and ctx.content_chunks:
        # No usage chunk (cancelled, interrupted): one content chunk is one token on vLLM and llama.cpp.
        ctx.completion_tokens = ctx.content_chunks
    model = ctx.model or (ctx.parsed.model if ctx.parsed else "")
    backend = ctx.backend or "none"
    status = ctx.status or (ctx.error.status if ctx.error else 500)
    metrics.requests.labels(model or "none", backend, str(status), ctx.outcome.value).inc()
    if ctx.parsed is not None and model:
        metrics.e2e.labels(model).observe((end_ns - ctx.started_ns) / 1e9)
        if ctx.backend:
            if ctx.prompt_tokens:
                metrics.prompt_tokens.labels(model, backend).inc(ctx.prompt_tokens)
            if ctx.completion_tokens:
                metrics.generation_tokens.labels(model, backend).inc(ctx.completion_tokens)
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
        log.info("%s", orjson.dumps(record).decode())
