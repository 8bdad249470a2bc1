"""Client and Stream: the blocking twin. Reads happen in the caller's thread, only when it asks for more.

Deadlines between chunks are enforced per socket read without a helper thread: the body is read in
blocking mode with the socket's SO_RCVTIMEO set to the time left (first token, idle or total), so a
stalled server makes recv() return EAGAIN exactly then. httpx's own read timeout still bounds the
wait for response headers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import time
import weakref
from collections.abc import Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from ._config import DEFAULT_RETRY, DEFAULT_TIMEOUTS, Budget, Retry, Timeouts
from ._core import DRAIN_MAX_READS, DRAIN_TIMEOUT_S, MAX_ERROR_BODY_BYTES, StreamView, _Call
from ._exceptions import InferlineError, StreamError
from ._models import Completion
from ._transport import (
    DEFAULT_BASE_URL,
    answer_error,
    base_headers,
    is_event_stream,
    raw_chunks_of,
    send_error,
)

__all__ = ["Client", "Stream"]

# A read that raised this close to its deadline timed out (SO_RCVTIMEO rounds up to a kernel tick).
_DEADLINE_SLACK_S = 0.005


class Stream(StreamView):
    """The text deltas of one call, pulled from the socket as you iterate.

    Iterate it once. Leaving the loop early (break, an exception), `close()` or leaving a `with`
    block closes the connection at once, which makes the server stop generating. After the loop,
    `usage`, `finish_reason`, `backend`, `model`, `ttft_s` and `tokens_per_s` are set.
    """

    __slots__ = ("_client", "_closed", "_gen", "_response", "_started")

    def __init__(self, client: Client, call: _Call) -> None:
        self._client = client
        self._call = call
        # A weak reference: the generator's frame holds this Stream, and a strong one back would make a
        # cycle that keeps the connection open after `break` until the cyclic GC runs.
        self._gen: weakref.ref[Generator[str, None, None]] | None = None
        self._response: httpx.Response | None = None
        self._started = False
        self._closed = False

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a Stream can be iterated only once")
        self._started = True
        gen = self._run()
        self._gen = weakref.ref(gen)
        return gen

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop now: close the connection (the server cancels generation). Safe to call twice."""
        self._started = self._closed = True
        gen = self._gen() if self._gen is not None else None
        if gen is not None:
            try:
                gen.close()
            except ValueError:  # being iterated in another thread: unblock its read; that thread cleans up
                _shutdown(self._response)
                return
        self._close_response()

    def _close_response(self) -> None:
        resp, self._response = self._response, None
        if resp is not None:
            resp.close()

    def _run(self) -> Generator[str, None, None]:
        call = self._call
        try:
            while not self._closed:
                body = call.begin_attempt()
                try:
                    resp = self._client._send(call, body)
                    self._response = resp
                    yield from self._read(resp, call)
                    return
                except InferlineError as exc:
                    self._close_response()
                    if self._closed:  # close() from another thread broke the read: just stop
                        return
                    delay = call.retry_delay(exc)
                    if delay is None:
                        call.annotate(exc)
                        raise
                    call.prepare_retry()
                    time.sleep(delay)
        finally:
            self._close_response()

    def _read(self, resp: httpx.Response, call: _Call) -> Iterator[str]:
        sock = _socket_of(resp)
        if sock is not None:
            # Blocking reads so SO_RCVTIMEO (set below) is the deadline: see the module docstring.
            timeout_ext = resp.request.extensions.get("timeout")
            if isinstance(timeout_ext, dict):
                timeout_ext["read"] = None
        chunks = raw_chunks_of(resp)
        monotonic = time.monotonic
        rcvtimeo: float | None = -1.0  # never a real value: the first read always sets the socket's
        while True:
            wait, timeout_cls = call.read_timeout()
            if wait is not None and wait <= 0:
                raise call.timeout_error(timeout_cls)
            if sock is not None and wait != rcvtimeo:
                _set_rcvtimeo(sock, wait)
                rcvtimeo = wait
            t_read = monotonic()
            try:
                raw = next(chunks)
            except StopIteration:
                break
            except httpx.TransportError as exc:
                if wait is not None and monotonic() - t_read >= wait - _DEADLINE_SLACK_S:
                    raise call.timeout_error(timeout_cls) from None
                raise StreamError(f"connection lost mid-stream: {exc!r}") from exc
            now = monotonic()
            for payload in call.decoder.feed(raw):
                delta = call.on_payload(payload, now)
                if delta:
                    yield delta
                elif call.done:
                    break
            if call.done:
                break
        if call.done:
            _drain(chunks, sock)
        call.end_of_body()


class Client:
    """A blocking client for any OpenAI-compatible server: inferline, vLLM, llama.cpp, OpenAI.

    `base_url` includes the API prefix (http://127.0.0.1:8080/v1). `transport` replaces httpx's
    (httpx.MockTransport, or HTTPTransport(socket_options=...)). `budget` is shared by every call
    that does not pass its own. Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        model: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: Retry = DEFAULT_RETRY,
        budget: Budget | None = None,
        resume: bool = False,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.model = model
        self.timeouts = timeouts
        self.retry = retry
        self.budget = budget
        self.resume = resume
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=base_headers(api_key, headers),
            transport=transport,
            timeout=None,  # each request carries its own, from Timeouts
            follow_redirects=False,
        )

    def stream(
        self,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        prompt: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        budget: Budget | None = None,
        timeouts: Timeouts | None = None,
        resume: bool | None = None,
        max_chunks: int | None = None,
        max_chars: int | None = None,
        keep_text: bool = True,
        **sampling: Any,
    ) -> Stream:
        """Start a call (sent on first iteration) and return its Stream of text deltas.

        `messages` uses /chat/completions, `prompt` uses /completions. Other keyword arguments
        (temperature, top_p, stop, seed, ...) go into the request body as they are. `keep_text=False`
        keeps memory O(1) for unbounded generations (then partial_text and `text` are empty).
        """
        call = _Call(
            messages=messages,
            prompt=prompt,
            model=model if model is not None else self.model,
            max_tokens=max_tokens,
            sampling=sampling,
            budget=budget if budget is not None else self.budget,
            timeouts=timeouts if timeouts is not None else self.timeouts,
            retry=self.retry,
            resume=self.resume if resume is None else resume,
            max_chunks=max_chunks,
            max_chars=max_chars,
            keep_text=keep_text,
        )
        return Stream(self, call)

    def complete(
        self,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        prompt: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        budget: Budget | None = None,
        timeouts: Timeouts | None = None,
        resume: bool | None = None,
        **sampling: Any,
    ) -> Completion:
        """The whole answer, streamed underneath (so budgets, retries and timeouts apply the same)."""
        with self.stream(
            messages=messages,
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            budget=budget,
            timeouts=timeouts,
            resume=resume,
            **sampling,
        ) as s:
            for _ in s:
                pass
        return s._call.completion()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: _Call, body: bytes) -> httpx.Response:
        """POST one attempt and wait for headers; any failure comes out as a typed InferlineError."""
        connect_s, read_s = call.send_timeouts()
        timeout = httpx.Timeout(connect=connect_s, read=read_s, write=connect_s, pool=connect_s)
        request = self._http.build_request("POST", call.path, content=body, timeout=timeout)
        try:
            resp = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise send_error(exc, call, self.base_url) from exc
        call.on_headers(resp.headers)
        if resp.status_code >= 300 or not is_event_stream(resp.headers):
            try:
                data = _read_capped(resp, MAX_ERROR_BODY_BYTES)
            except httpx.TransportError:
                data = b""
            finally:
                resp.close()
            raise answer_error(resp, data)
        return resp


def _read_capped(resp: httpx.Response, limit: int) -> bytes:
    out = bytearray()
    for raw in raw_chunks_of(resp):
        out += raw
        if len(out) >= limit:
            break
    return bytes(out[:limit])


def _socket_of(resp: httpx.Response) -> socket.socket | None:
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _drain(chunks: Iterator[bytes], sock: socket.socket | None) -> None:
    """After [DONE], read the end of the body (bounded) so the connection goes back to the pool."""
    if sock is not None:
        _set_rcvtimeo(sock, DRAIN_TIMEOUT_S)
    try:
        for _ in range(DRAIN_MAX_READS):
            next(chunks)
    except (StopIteration, httpx.TransportError):
        pass  # done (connection released), or the server kept it open and httpcore closed it


def _set_rcvtimeo(sock: socket.socket, seconds: float | None) -> None:
    if seconds is None:
        sec, usec = 0, 0  # 0 = no limit
    else:
        seconds = max(seconds, 0.001)
        sec, usec = int(seconds), int((seconds % 1) * 1_000_000) or (0 if int(seconds) else 1000)
    try:
        if sys.platform == "win32":  # a DWORD of milliseconds
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("I", sec * 1000 + usec // 1000))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", sec, usec))
    except OSError:
        pass  # the connection is already gone; the read will say so


def _shutdown(resp: httpx.Response | None) -> None:
    sock = _socket_of(resp) if resp is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
