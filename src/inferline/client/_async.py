"""AsyncClient and AsyncStream: the asyncio twin. Each socket read happens inside the consumer's `async for`.

Deadlines between chunks wrap each read in `asyncio.timeout`, so only time spent waiting on the
server counts. Task cancellation, `break`, `aclose()` and `async with` exit all close the
connection, which makes the server stop generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from ._config import DEFAULT_RETRY, DEFAULT_TIMEOUTS, Budget, Retry, Timeouts
from ._core import DRAIN_MAX_READS, DRAIN_TIMEOUT_S, MAX_ERROR_BODY_BYTES, StreamView, _Call
from ._exceptions import InferlineError, StreamError
from ._models import Completion
from ._transport import (
    DEFAULT_BASE_URL,
    aiter_chunks_of,
    answer_error,
    base_headers,
    is_event_stream,
    send_error,
)

__all__ = ["AsyncClient", "AsyncStream"]


class AsyncStream(StreamView):
    """The text deltas of one call, pulled from the socket as you `async for` over it.

    Iterate it once. Leaving the loop early, `aclose()`, leaving an `async with` block or cancelling
    the task closes the connection, which makes the server stop generating. After the loop,
    `usage`, `finish_reason`, `backend`, `model`, `ttft_s` and `tokens_per_s` are set.
    """

    __slots__ = ("_agen", "_client", "_closed", "_response", "_started")

    def __init__(self, client: AsyncClient, call: _Call) -> None:
        self._client = client
        self._call = call
        # Weak, as in Stream: a strong reference would form a cycle and delay the close after `break`.
        self._agen: weakref.ref[AsyncGenerator[str, None]] | None = None
        self._response: httpx.Response | None = None
        self._started = False
        self._closed = False

    def __aiter__(self) -> AsyncIterator[str]:
        if self._started:
            raise RuntimeError("an AsyncStream can be iterated only once")
        self._started = True
        agen = self._run()
        self._agen = weakref.ref(agen)
        return agen

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop now: close the connection (the server cancels generation). Safe to call twice."""
        self._started = self._closed = True
        agen = self._agen() if self._agen is not None else None
        if agen is not None:
            with contextlib.suppress(RuntimeError):  # iterated by another task: close under it; it stops
                await agen.aclose()
        await self._close_response()

    async def _close_response(self) -> None:
        resp, self._response = self._response, None
        if resp is not None:
            await resp.aclose()

    async def _run(self) -> AsyncGenerator[str, None]:
        call = self._call
        try:
            while not self._closed:
                body = call.begin_attempt()
                try:
                    resp = await self._client._send(call, body)
                    self._response = resp
                    async for delta in self._read(resp, call):
                        yield delta
                    return
                except InferlineError as exc:
                    await self._close_response()
                    if self._closed:  # aclose() from another task broke the read: just stop
                        return
                    delay = call.retry_delay(exc)
                    if delay is None:
                        call.annotate(exc)
                        raise
                    call.prepare_retry()
                    await asyncio.sleep(delay)
        finally:
            await self._close_response()

    async def _read(self, resp: httpx.Response, call: _Call) -> AsyncIterator[str]:
        chunks = aiter_chunks_of(resp)
        anext_chunk = chunks.__anext__
        monotonic = time.monotonic
        try:
            while True:
                wait, timeout_cls = call.read_timeout()
                try:
                    if wait is None:
                        raw = await anext_chunk()
                    elif wait <= 0:
                        raise call.timeout_error(timeout_cls)
                    else:
                        async with asyncio.timeout(wait):
                            raw = await anext_chunk()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise call.timeout_error(timeout_cls) from None
                except httpx.TransportError as exc:
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
                await _drain(anext_chunk)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        call.end_of_body()


async def _drain(anext_chunk: Callable[[], Awaitable[bytes]]) -> None:
    """After [DONE], read the end of the body (bounded) so the connection goes back to the pool."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            for _ in range(DRAIN_MAX_READS):
                await anext_chunk()
    except (StopAsyncIteration, TimeoutError, httpx.TransportError):
        pass  # done (connection released), or the server kept it open and we close it


class AsyncClient:
    """An asyncio client for any OpenAI-compatible server: inferline, vLLM, llama.cpp, OpenAI.

    Same options as `Client`; `transport` takes an httpx.AsyncBaseTransport. Use `async with`, or
    `await aclose()`.
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.model = model
        self.timeouts = timeouts
        self.retry = retry
        self.budget = budget
        self.resume = resume
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=base_headers(api_key, headers),
            transport=transport,
            timeout=None,
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
    ) -> AsyncStream:
        """Start a call (sent on first iteration) and return its AsyncStream; see `Client.stream`."""
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
        return AsyncStream(self, call)

    async def complete(
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
        async with self.stream(
            messages=messages,
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            budget=budget,
            timeouts=timeouts,
            resume=resume,
            **sampling,
        ) as s:
            async for _ in s:
                pass
        return s._call.completion()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: _Call, body: bytes) -> httpx.Response:
        """POST one attempt and wait for headers; any failure comes out as a typed InferlineError."""
        connect_s, read_s = call.send_timeouts()
        timeout = httpx.Timeout(connect=connect_s, read=read_s, write=connect_s, pool=connect_s)
        request = self._http.build_request("POST", call.path, content=body, timeout=timeout)
        try:
            resp = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise send_error(exc, call, self.base_url) from exc
        call.on_headers(resp.headers)
        if resp.status_code >= 300 or not is_event_stream(resp.headers):
            data = bytearray()
            try:
                async for raw in aiter_chunks_of(resp):
                    data += raw
                    if len(data) >= MAX_ERROR_BODY_BYTES:
                        break
            except httpx.TransportError:
                pass
            finally:
                await resp.aclose()
            raise answer_error(resp, bytes(data[:MAX_ERROR_BODY_BYTES]))
        return resp
