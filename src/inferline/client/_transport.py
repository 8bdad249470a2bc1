"""What both clients send and how they get at the body bytes: headers, content checks, raw chunk iterators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping

import httpx

from ._core import _Call
from ._exceptions import (
    APIConnectionError,
    ConnectTimeout,
    FirstTokenTimeout,
    InferlineError,
    StreamError,
    TotalTimeout,
    error_from_response,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "aiter_chunks_of",
    "answer_error",
    "base_headers",
    "is_event_stream",
    "raw_chunks_of",
    "send_error",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"  # `inferline serve` with its defaults
USER_AGENT = "inferline-client/0.1"


def base_headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": "text/event-stream",
        # SSE is not worth compressing, and identity lets us hand raw socket bytes to the parser.
        "accept-encoding": "identity",
        "user-agent": USER_AGENT,
    }
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    if extra:
        headers.update(extra)
    return headers


def is_event_stream(headers: httpx.Headers) -> bool:
    # Missing content-type is tolerated (some minimal servers omit it); JSON or HTML is not a stream.
    ctype = headers.get("content-type")
    return ctype is None or ctype.startswith("text/event-stream")


def _is_identity(headers: httpx.Headers) -> bool:
    enc = headers.get("content-encoding")
    return enc is None or enc == "identity"


def _raw_ok(resp: httpx.Response) -> bool:
    # A transport may hand over a body it already read (httpx.MockTransport with content=...):
    # then only the decoded iterators can replay it.
    return _is_identity(resp.headers) and not resp.is_stream_consumed


def raw_chunks_of(resp: httpx.Response) -> Iterator[bytes]:
    """Body bytes as read from the socket (one read each); decoded only if the server compressed anyway."""
    return resp.iter_raw() if _raw_ok(resp) else resp.iter_bytes()


def aiter_chunks_of(resp: httpx.Response) -> AsyncIterator[bytes]:
    return resp.aiter_raw() if _raw_ok(resp) else resp.aiter_bytes()


def send_error(exc: httpx.TransportError, call: _Call, base_url: str) -> InferlineError:
    """httpx's failure while sending or waiting for headers, as the client's typed error."""
    if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return call.timeout_error(ConnectTimeout)
    if isinstance(exc, httpx.TimeoutException):
        total, first = call.total_deadline, call.first_token_deadline
        binding_total = total is not None and (first is None or total <= first)
        return call.timeout_error(TotalTimeout if binding_total else FirstTokenTimeout)
    return APIConnectionError(f"cannot reach {base_url}: {exc!r}")


def answer_error(resp: httpx.Response, body: bytes) -> InferlineError:
    """A non-2xx answer, or a 2xx that is not an event stream, as the client's typed error."""
    if resp.status_code >= 300:
        return error_from_response(resp.status_code, resp.headers, body)
    return StreamError(
        f"expected text/event-stream, got {resp.headers.get('content-type')!r}: {body[:200]!r}",
        transient=False,
    )
