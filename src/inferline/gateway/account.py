"""account: runs for every request — reconcile the key's reservation, metrics, the one log line.

Never logs prompts or keys (the key's name only). The reconcile runs in a background task the limiter
keeps and drains on shutdown, so it never delays the client and is never lost.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

from inferline.errors import Outcome
from inferline.limits import Limiter
from inferline.logs import request_line
from inferline.metrics import GatewayMetrics

from .estimates import OutputEstimates
from .values import Ending

log = logging.getLogger("inferline.request")


class Accountant:
    def __init__(self, limiter: Limiter, estimates: OutputEstimates, metrics: GatewayMetrics) -> None:
        self._limiter = limiter
        self._estimates = estimates
        self._metrics = metrics
        # labels() validates and takes a lock on every call: children are kept, one per label set seen.
        self._requests: dict[tuple[str, str, int, Outcome], Counter] = {}
        self._e2e: dict[tuple[str, str], Histogram] = {}
        self._tokens: dict[tuple[str, str, str], Counter] = {}

    def account(self, ending: Ending) -> None:
        d = ending.delivery
        parsed = ending.parsed
        if ending.reservation is not None:
            self._limiter.release_soon(ending.reservation, d.tokens_used(parsed))
        if not d.completion_tokens and d.content_chunks:
            # No usage chunk (cancelled, interrupted): one content chunk is one token on vLLM and llama.cpp.
            d.completion_tokens = d.content_chunks
        model = d.model or (parsed.model if parsed else "") or "none"
        backend = d.backend or "none"
        key = (model, backend, ending.status, ending.outcome)
        counter = self._requests.get(key)
        if counter is None:
            labels = (model, backend, str(ending.status), ending.outcome.value)
            counter = self._requests[key] = self._metrics.requests.labels(*labels)
        counter.inc()
        if parsed is not None and model != "none":
            e2e = self._e2e.get((model, backend))
            if e2e is None:
                e2e = self._e2e[(model, backend)] = self._metrics.e2e.labels(model, backend)
            e2e.observe((ending.ended_ns - ending.started_ns) / 1e9)
            if d.backend and d.backend != "cache":
                if d.prompt_tokens:
                    self._token_counter("prompt", model, backend).inc(d.prompt_tokens)
                if d.completion_tokens:
                    self._token_counter("generation", model, backend).inc(d.completion_tokens)
                    if d.complete and ending.error is None:
                        self._estimates.observe(model, d.completion_tokens)
        if log.isEnabledFor(logging.INFO):
            # Enum members as they are (orjson writes a str enum's value); ms to 0.1 by integer division,
            # a third of round()'s cost: this line is written for every request.
            record = {
                "event": "request",
                "id": ending.request_id,
                "model": model if model != "none" else None,
                "key": ending.principal.name if ending.principal else None,
                "backend": d.backend or None,
                "status": ending.status,
                "outcome": ending.outcome,
                "stream": parsed.stream if parsed else None,
                "attempts": d.attempts,
                "prompt_tokens": d.prompt_tokens,
                "completion_tokens": d.completion_tokens,
                "finish_reason": d.finish_reason,
                "ttft_ms": (d.first_token_ns - ending.started_ns) // 100_000 / 10 if d.first_token_ns else None,
                "duration_ms": (ending.ended_ns - ending.started_ns) // 100_000 / 10,
            }
            if ending.variant is not None:
                record["variant"] = ending.variant
            if ending.error is not None:
                record["error"] = ending.error.message
            request_line(record, log)  # == log.info("%s", json): written in batches, off the hot path (logs.py)

    def _token_counter(self, kind: str, model: str, backend: str) -> Counter:
        key = (kind, model, backend)
        child = self._tokens.get(key)
        if child is None:
            metric = self._metrics.prompt_tokens if kind == "prompt" else self._metrics.generation_tokens
            child = self._tokens[key] = metric.labels(model, backend)
        return child
