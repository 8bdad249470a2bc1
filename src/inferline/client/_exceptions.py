"""Every error the client raises, and the one place HTTP answers and SSE error events become them.

    InferlineError                  base; .partial_text is the text already yielded ("" if none)
    ├── APIStatusError              a non-2xx answer: .status .type .code .message .param .retry_after_s .body
    │   ├── BadRequest              400, 413, 422
    │   ├── AuthenticationError     401
    │   ├── PermissionDenied        403
    │   ├── NotFound                404
    │   ├── RateLimited             429 (retried, honouring Retry-After)
    │   └── ServerError             5xx (retried)
    │       └── ServiceUnavailable  503 (retried, honouring Retry-After)
    ├── APIConnectionError          refused, reset or unreachable before an answer (retried)
    ├── APITimeoutError             .timeout_s
    │   ├── ConnectTimeout          no connection within Timeouts.connect_s (retried)
    │   ├── FirstTokenTimeout       no first token within Timeouts.first_token_s (retried)
    │   ├── IdleTimeout             no bytes for Timeouts.idle_s between chunks
    │   └── TotalTimeout            the whole call ran past Timeouts.total_s (never retried)
    ├── StreamError                 the stream broke: an SSE error event, a dropped connection, bad JSON,
    │                               or an end without [DONE] (a truncated stream is never a clean end)
    └── BudgetExceeded              a Budget, max_chunks or max_chars ran out; .limit says which

"Retried" means: only before the first token. Once text has been yielded an error is raised with
that text in .partial_text, unless the call asked for resume=True (see docs/client.md).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import orjson

if TYPE_CHECKING:
    from ._models import Usage

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequest",
    "BudgetExceeded",
    "ConnectTimeout",
    "FirstTokenTimeout",
    "IdleTimeout",
    "InferlineError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "StreamError",
    "TotalTimeout",
]

# Error `type`s (and numeric `code`s) that mean "the server is struggling", not "your request is wrong":
# inferline's gateway, llama.cpp, vLLM and OpenAI spellings. Used to decide if an SSE error event
# that arrives before the first token may be retried.
_TRANSIENT_TYPES = frozenset(
    {
        "server_error",
        "service_unavailable",
        "unavailable_error",
        "upstream_error",
        "timeout",
        "rate_limit_error",
        "overloaded_error",
        "internal_error",
        "InternalServerError",
        "ServiceUnavailableError",
    }
)
_MAX_ERROR_MESSAGE_CHARS = 2000


class InferlineError(Exception):
    """Base of every client error. `partial_text` is what the caller already received ("" if nothing)."""

    def __init__(self, message: str, *, partial_text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.partial_text = partial_text


class APIStatusError(InferlineError):
    """The server answered with a non-2xx status; fields come from its OpenAI-style error body."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
        body: object = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message, partial_text=partial_text)
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s
        self.body = body

    def __str__(self) -> str:
        detail = ", ".join(f"{k}={v}" for k, v in (("type", self.type), ("code", self.code)) if v)
        return f"{self.status} {self.message}" + (f" ({detail})" if detail else "")


class BadRequest(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDenied(APIStatusError):
    pass


class NotFound(APIStatusError):
    pass


class RateLimited(APIStatusError):
    retryable = True


class ServerError(APIStatusError):
    retryable = True


class ServiceUnavailable(ServerError):
    pass


class APIConnectionError(InferlineError):
    """The server could not be reached, or the connection broke before the response headers."""


class APITimeoutError(InferlineError):
    """A deadline from `Timeouts` passed; `timeout_s` is the limit that was exceeded."""

    def __init__(self, message: str, *, timeout_s: float, partial_text: str = "") -> None:
        super().__init__(message, partial_text=partial_text)
        self.timeout_s = timeout_s


class ConnectTimeout(APITimeoutError):
    pass


class FirstTokenTimeout(APITimeoutError):
    pass


class IdleTimeout(APITimeoutError):
    pass


class TotalTimeout(APITimeoutError):
    pass


class StreamError(InferlineError):
    """The event stream failed after a 200: an SSE error event, a broken connection, or no [DONE].

    For an error event, `type`/`code` are the event's (None otherwise). `transient` is False only
    when the event says the request itself is bad, so retrying it would not help.
    """

    def __init__(
        self,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        transient: bool = True,
        partial_text: str = "",
    ) -> None:
        super().__init__(message, partial_text=partial_text)
        self.type = type
        self.code = code
        self.transient = transient


class BudgetExceeded(InferlineError):
    """A limit stopped the stream: `limit` is "budget" (a Budget), "max_chunks" or "max_chars".

    The connection is closed (which cancels generation on the server) unless the server had already
    finished. `partial_text` is everything yielded; `usage` is the server's count when it arrived.
    """

    def __init__(self, message: str, *, limit: str, usage: Usage | None = None, partial_text: str = "") -> None:
        super().__init__(message, partial_text=partial_text)
        self.limit = limit
        self.usage = usage


def status_error_class(status: int) -> type[APIStatusError]:
    """The status table: the only place a status code picks an exception class."""
    if status in (400, 413, 422):
        return BadRequest
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDenied
    if status == 404:
        return NotFound
    if status == 429:
        return RateLimited
    if status == 503:
        return ServiceUnavailable
    if status >= 500:
        return ServerError
    return APIStatusError


def parse_retry_after(headers: Mapping[str, str], now_s: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None if absent."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
    """Map a non-2xx answer to its typed exception; understands OpenAI, vLLM, llama.cpp and FastAPI bodies."""
    parsed: object = None
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    err: Mapping[str, object] = {}
    if isinstance(parsed, dict):
        inner = parsed.get("error")
        if isinstance(inner, dict):
            err = inner
        elif isinstance(inner, str):
            err = {"message": inner}
        else:
            err = parsed  # vLLM's older flat {"object": "error", "message": ..., "type": ..., "code": ...}
    message = err.get("message") or err.get("detail") or body.decode("utf-8", "replace").strip()
    message = str(message)[:_MAX_ERROR_MESSAGE_CHARS] or f"HTTP {status}"
    cls = status_error_class(status)
    return cls(
        message,
        status=status,
        type=_str_or_none(err.get("type")),
        code=_str_or_none(err.get("code")),
        param=_str_or_none(err.get("param")),
        retry_after_s=parse_retry_after(headers),
        body=parsed if parsed is not None else body.decode("utf-8", "replace"),
    )


def error_from_event(err: object) -> StreamError:
    """Map an in-band `{"error": ...}` SSE event to a StreamError; `transient` allows a retry or resume."""
    if not isinstance(err, dict):
        return StreamError(f"error event: {str(err)[:_MAX_ERROR_MESSAGE_CHARS]}")
    type_ = _str_or_none(err.get("type"))
    code_raw = err.get("code")
    code = _str_or_none(code_raw)
    status = code_raw if isinstance(code_raw, int) else None
    transient = (type_ in _TRANSIENT_TYPES) or (status is not None and (status >= 500 or status == 429))
    if type_ is None and status is None:
        transient = True  # an anonymous failure mid-generation: most likely the engine died
    message = str(err.get("message") or "error event")[:_MAX_ERROR_MESSAGE_CHARS]
    return StreamError(f"error event: {message}", type=type_, code=code, transient=transient)
