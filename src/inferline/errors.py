"""Every error a client can see, and the only place errors meet HTTP (status, OpenAI body, SSE form).

    GatewayError                      500 server_error
    ├── InvalidRequest                400 invalid_request_error
    │   └── ContextLengthExceeded     400 invalid_request_error / context_length_exceeded
    ├── Unauthorized                  401 authentication_error
    ├── NotFound                      404 invalid_request_error (unknown route)
    │   └── ModelNotFound             404 invalid_request_error / model_not_found
    ├── MethodNotAllowed              405 invalid_request_error
    ├── PayloadTooLarge               413 invalid_request_error
    ├── RateLimited                   429 rate_limit_error (+ Retry-After; key limits and budgets)
    │   ├── QueueFull                 429 the model's wait queue is full
    │   └── QueueTimeout              429 no engine had room before the queue deadline
    ├── UpstreamError                 502 upstream_error (an engine answered badly; names the backend)
    ├── BackendUnavailable            503 service_unavailable (+ Retry-After; no backend could take it)
    │   ├── StoreUnavailable          503 store_unavailable: the limit store is down and on_store_error is fail_closed
    │   └── ShuttingDown              503 (the gateway is draining)
    ├── UpstreamTimeout               504 timeout (names the backend)
    └── StreamInterrupted             -   only mid-stream: the engine failed after the first token

Before the first byte an error is a response; after it, `sse_error` ends the stream in-band.

One vocabulary says how a request ended: `Outcome`. An error's `outcome` is the metric label
(`inferline_requests_total{outcome}`), the log field and the `x-inferline-outcome` header, and its `code`
is the same word — except where the OpenAI API defines a finer code that SDKs and users match on
(`context_length_exceeded`, `model_not_found`, `invalid_api_key`, `unsupported_parameter`...): there the
outcome is the class (`invalid_request`, `not_found`, `unauthorized`) and the code the detail.

    StartupError                      not a client error: `inferline serve` cannot start (one line, exit 1)
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import ClassVar

import orjson

__all__ = [
    "BackendUnavailable",
    "ContextLengthExceeded",
    "GatewayError",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "QueueFull",
    "QueueTimeout",
    "RateLimited",
    "ShuttingDown",
    "StartupError",
    "StoreUnavailable",
    "StreamInterrupted",
    "Unauthorized",
    "UpstreamError",
    "UpstreamTimeout",
    "error_body",
    "sse_error",
]


class Outcome(StrEnum):
    """How a request ended: one closed vocabulary for the metric label, the log field and headers."""

    OK = "ok"
    INVALID = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CONCURRENCY_LIMITED = "concurrency_limited"
    QUEUE_FULL = "queue_full"
    QUEUE_TIMEOUT = "queue_timeout"
    CACHE_FALLBACK = "cache_fallback"
    NO_BACKEND = "no_backend"
    STORE_UNAVAILABLE = "store_unavailable"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    STREAM_INTERRUPTED = "stream_interrupted"
    CLIENT_CANCELLED = "client_cancelled"
    CLIENT_STALLED = "client_stalled"
    SHUTDOWN = "shutting_down"
    INTERNAL = "internal_error"


class GatewayError(Exception):
    """Base of every client-visible error. Subclasses set status and type; nothing else maps errors."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = "internal_error"
    default_outcome: ClassVar[Outcome] = Outcome.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        backend: str | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.outcome: Outcome = outcome if outcome is not None else self.default_outcome
        self.code = code if code is not None else self.default_code
        self.retry_after_s = retry_after_s
        self.backend = backend
        self.headers: list[tuple[bytes, bytes]] = []  # extra response headers (e.g. x-ratelimit-*)


class InvalidRequest(GatewayError):
    status, error_type, default_outcome = 400, "invalid_request_error", Outcome.INVALID
    default_code: ClassVar[str | None] = None


class ContextLengthExceeded(InvalidRequest):
    default_code = "context_length_exceeded"


class Unauthorized(GatewayError):
    status, error_type, default_code, default_outcome = (
        401,
        "authentication_error",
        "invalid_api_key",
        Outcome.UNAUTHORIZED,
    )


class NotFound(GatewayError):
    status, error_type, default_code, default_outcome = 404, "invalid_request_error", "not_found", Outcome.NOT_FOUND


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status, error_type, default_code, default_outcome = (
        405,
        "invalid_request_error",
        "method_not_allowed",
        Outcome.INVALID,
    )


class PayloadTooLarge(GatewayError):
    status, error_type, default_code, default_outcome = (
        413,
        "invalid_request_error",
        "payload_too_large",
        Outcome.INVALID,
    )


class RateLimited(GatewayError):
    status, error_type, default_code, default_outcome = 429, "rate_limit_error", "rate_limited", Outcome.RATE_LIMITED


class QueueFull(RateLimited):
    default_code, default_outcome = "queue_full", Outcome.QUEUE_FULL


class QueueTimeout(RateLimited):
    default_code, default_outcome = "queue_timeout", Outcome.QUEUE_TIMEOUT


class UpstreamError(GatewayError):
    status, error_type, default_code, default_outcome = 502, "upstream_error", "upstream_error", Outcome.UPSTREAM_ERROR


class BackendUnavailable(GatewayError):
    status, error_type, default_code, default_outcome = 503, "service_unavailable", "no_backend", Outcome.NO_BACKEND


class StoreUnavailable(BackendUnavailable):
    default_code, default_outcome = "store_unavailable", Outcome.STORE_UNAVAILABLE


class ShuttingDown(BackendUnavailable):
    default_code, default_outcome = "shutting_down", Outcome.SHUTDOWN


class UpstreamTimeout(GatewayError):
    status, error_type, default_code, default_outcome = 504, "timeout", "upstream_timeout", Outcome.UPSTREAM_TIMEOUT


class StreamInterrupted(GatewayError):
    """The engine failed after tokens were sent: only ever delivered as an SSE error event."""

    status, error_type, default_code, default_outcome = (
        502,
        "upstream_error",
        "stream_interrupted",
        Outcome.STREAM_INTERRUPTED,
    )


class StartupError(Exception):
    """`inferline serve` cannot start for a reason the operator can fix (bad config, unreachable engine,
    port in use, missing model). The CLI prints `error: <message>` as one line and exits 1; the message
    names what to fix. A traceback is shown only with --log-level debug."""


def error_body(exc: GatewayError) -> bytes:
    err = {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}
    return orjson.dumps({"error": err})


def sse_error(exc: GatewayError) -> bytes:
    """The in-band form once headers are out: an error event, then [DONE] is deliberately NOT sent."""
    return b"data: " + error_body(exc) + b"\n\n"


def error_headers(exc: GatewayError) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"x-inferline-outcome", exc.outcome.value.encode())]
    if exc.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()))
    return headers + exc.headers
