"""upstream: one attempt on one engine — the request it gets, and its answer's status mapped. 400 / 502-504.

`Upstream.open(parsed, target, delivery)` checks what this engine cannot do (400), makes prompt + output
fit its context (gateway/parse.py), POSTs, and returns the engine's 200 response with the body unread.
Failures that leave nothing sent to the client raise `Retryable`: the pipeline asks route for another
engine. The client's own mistakes (400 from the engine) keep their 4xx and are never retried.
"""

from __future__ import annotations

from typing import Any

import orjson

from inferline.backends.base import BackendConnectError, UpstreamResponse
from inferline.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    UpstreamError,
    UpstreamTimeout,
)

from .parse import check_context, fit_output
from .values import Delivery, ParsedRequest, Target

_MAX_ERROR_BODY_BYTES = 64 * 1024


class Retryable(Exception):
    """This engine failed before any token reached the client: another engine may take the request."""

    def __init__(self, error: GatewayError, count_failure: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.count_failure = count_failure  # False: the engine is fine, only busy (429) — no ejection


def upstream_body(
    parsed: ParsedRequest, upstream_model: str, max_tokens: int | None = None, priority: int | None = None
) -> bytes:
    body = dict(parsed.body)
    body["model"] = upstream_model
    if priority is not None:
        body["priority"] = priority
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
        body.pop("max_completion_tokens", None)
    if parsed.stream:
        # Always ask for usage: token accounting needs it; relay drops the chunk if the client didn't ask.
        opts = dict(body.get("stream_options") or {})
        opts["include_usage"] = True
        body["stream_options"] = opts
    return orjson.dumps(body)


class Upstream:
    def __init__(self, model_contexts: dict[str, int | None]) -> None:
        self._model_contexts = model_contexts  # configured context per model (None: ask the engine)

    async def open(self, parsed: ParsedRequest, target: Target, delivery: Delivery) -> UpstreamResponse:
        """The engine's 200 response, headers read. Raises Retryable, or a client error (400)."""
        state = target.state
        backend = state.backend
        _reject_unsupported(parsed, target)
        context_tokens = self._model_contexts.get(target.model) or backend.context_tokens
        check_context(parsed, context_tokens, target.model)
        max_tokens = None
        if backend.caps_output_to_context and context_tokens:
            max_tokens = await fit_output(parsed, backend, context_tokens, target.model)
        delivery.attempts += 1
        delivery.backend, delivery.model = backend.name, target.model
        priority = target.priority if backend.send_priority else None
        try:
            resp = await backend.post(parsed.path, upstream_body(parsed, backend.upstream_model, max_tokens, priority))
            if resp.status == 400 and priority is not None:
                err = await _engine_error(resp, backend.name)
                if "priority" not in str(err).lower():
                    raise err
                # An engine not started with --scheduling-policy priority: stop sending it, resend once.
                backend.send_priority = False
                resp = await backend.post(parsed.path, upstream_body(parsed, backend.upstream_model, max_tokens))
        except BackendConnectError as exc:
            raise Retryable(BackendUnavailable(f"backend {backend.name} unreachable: {exc}", retry_after_s=2)) from None
        except TimeoutError as timeout:  # its own name: mypyc gives a name one type per function
            raise Retryable(UpstreamTimeout(f"backend {backend.name}: {timeout}")) from None
        if resp.status != 200:
            raise await _engine_error(resp, backend.name)
        return resp


def _reject_unsupported(parsed: ParsedRequest, target: Target) -> None:
    fields = target.state.backend.unsupported_fields
    if not fields:
        return
    used = sorted(k for k in parsed.body if k in fields and parsed.body[k] not in (None, False, [], {}))
    if parsed.body.get("n") not in (None, 1) and target.state.backend.kind.value == "embedded":
        used.append("n")
    if used:
        raise InvalidRequest(
            f"`{used[0]}` is not supported by the embedded llama.cpp engine serving model {target.model!r} "
            f"(unsupported here: {', '.join(used)}); use a vLLM backend for it",
            param=used[0],
            code="unsupported_parameter",
        )


async def _engine_error(resp: UpstreamResponse, backend: str) -> Exception:
    """Map an engine's non-200 answer: the client's mistakes keep their 4xx; the engine's are retried."""
    try:
        raw = await resp.read(_MAX_ERROR_BODY_BYTES)
    except BackendConnectError:
        raw = b""
    finally:
        resp.close()
    message = raw[:500].decode("utf-8", "replace").strip()
    try:
        err: Any = orjson.loads(raw)
        if isinstance(err, dict):
            inner = err.get("error", err)
            if isinstance(inner, dict) and inner.get("message"):
                message = str(inner["message"])
            elif isinstance(inner, str):
                message = inner
    except orjson.JSONDecodeError:
        pass
    status = resp.status
    text = f"backend {backend} answered {status}: {message or '(no body)'}"
    if status in (400, 422):
        lowered = message.lower()
        if "context" in lowered and ("exceed" in lowered or "length" in lowered or "long" in lowered):
            return ContextLengthExceeded(text, param="messages")
        return InvalidRequest(text)
    if status == 413:
        return PayloadTooLarge(text)
    if status == 429:
        return Retryable(BackendUnavailable(text, retry_after_s=1, backend=backend), count_failure=False)
    if status in (408, 504):
        return Retryable(UpstreamTimeout(text, backend=backend))
    # 5xx, and 401/403/404 from an engine (configuration problems of ours, not the client's).
    return Retryable(UpstreamError(text, backend=backend))
