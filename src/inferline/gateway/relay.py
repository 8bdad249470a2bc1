"""relay: the engine's answer to the client, bytes in and bytes out; errors after the first byte in-band.

Before the first content token nothing has reached the client: the engine's early events (role chunk)
are held, and a failure raises `Retryable` so route can try another engine. After it, the stream belongs
to the client: an engine failure ends it with an SSE error event (`stream_interrupted`), never a
clean-looking [DONE]. What one network read from the engine brought goes out in one `send`, and the next
read waits for that send: the client's pace is the engine's (backpressure). Per chunk: no parsing of plain
tokens, no logging, no label lookups.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

import orjson

from inferline.backends.base import BackendConnectError, EventBatch, UpstreamResponse
from inferline.errors import (
    GatewayError,
    InvalidRequest,
    StreamInterrupted,
    UpstreamError,
    UpstreamTimeout,
    error_body,
    error_headers,
    sse_error,
)
from inferline.types import Message, Send

from .upstream import Retryable
from .values import Delivery, ParsedRequest, Target

_MAX_UPSTREAM_BODY_BYTES = 32 * 1024 * 1024
_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tell nginx-style proxies not to buffer the stream
]
JSON_HEADERS = [(b"content-type", b"application/json")]


class Relay:
    def __init__(self, first_token_timeout_s: float) -> None:
        self._first_token_timeout_s = first_token_timeout_s

    async def relay(
        self,
        parsed: ParsedRequest,
        resp: UpstreamResponse,
        target: Target,
        delivery: Delivery,
        send: Send,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Relay `resp` (status 200) to the client. Raises Retryable before the first token,
        StreamInterrupted after it; closes `resp` either way."""
        try:
            if parsed.stream:
                await self._stream(parsed, resp, target, delivery, send, headers)
            else:
                await self._whole(resp, delivery, send, headers)
        finally:
            resp.close()

    async def _whole(
        self, resp: UpstreamResponse, delivery: Delivery, send: Send, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            raw = await resp.read(_MAX_UPSTREAM_BODY_BYTES)
        except BackendConnectError as exc:
            raise Retryable(UpstreamError(f"backend {delivery.backend} failed mid-response: {exc}")) from None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Retryable(UpstreamError(f"backend {delivery.backend} sent a body that is not JSON")) from None
        usage = obj.get("usage") if isinstance(obj, dict) else None
        if isinstance(usage, dict):
            delivery.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            delivery.completion_tokens = int(usage.get("completion_tokens") or 0)
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if choices:
            delivery.finish_reason = choices[0].get("finish_reason")
        delivery.first_token_ns = delivery.last_token_ns = time.monotonic_ns()
        delivery.status = 200
        delivery.body = raw
        delivery.started = True
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS + _who(delivery, headers)})
        await send({"type": "http.response.body", "body": raw, "more_body": False})
        delivery.complete = True

    async def _stream(
        self,
        parsed: ParsedRequest,
        resp: UpstreamResponse,
        target: Target,
        delivery: Delivery,
        send: Send,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        batches = resp.event_batches()
        pending: list[bytes] = []
        rest: list[bytes] = []
        backend = delivery.backend
        # Phase 1: hold events until the first token, so an engine that fails now can be retried.
        while True:
            try:
                batch = await anext(batches)
            except StopAsyncIteration:
                raise Retryable(UpstreamError(f"backend {backend} closed the stream before any token")) from None
            except BackendConnectError as exc:
                raise Retryable(UpstreamError(f"backend {backend} failed before the first token: {exc}")) from None
            except TimeoutError:
                raise Retryable(
                    UpstreamTimeout(f"backend {backend}: no token within {self._first_token_timeout_s}s")
                ) from None
            first = _hold_until_first_token(delivery, parsed, batch, pending)
            if first is not None:
                rest = _after(batch, first + 1)
                break
        state = target.state
        m = state.metrics
        now = time.monotonic_ns()
        delivery.status = 200
        delivery.started = True
        delivery.first_token_ns = delivery.last_token_ns = now
        delivery.content_chunks = 1
        state.generated_in_flight += 1
        state.note_started(target.prompt_tokens)
        if m is not None:
            m.ttft.observe((now - delivery.arrival_ns) / 1e9)
        start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": SSE_HEADERS + _who(delivery, headers),
        }
        await _timed_send(delivery, send, start)
        # Phase 2: the stream is the client's. One send per engine read, and the next read waits for it
        # (backpressure). The held events go out with the rest of their read: with the response head, one
        # write. Inter-token gaps are collected and observed once, at the end (one histogram update).
        itls: list[float] = []
        observe_itl = itls.append
        monotonic_ns = time.monotonic_ns
        batch = rest
        out: list[bytes] = pending
        try:
            while True:
                tokens = 0
                now = monotonic_ns()
                raw: bytes | None = getattr(batch, "raw", None)
                if raw is not None:
                    # The common case, decided by a few scans of the read's bytes: its leading events are
                    # content deltas only, in the exact `data: {...}\n\n` framing we would write; they are
                    # forwarded as they came, and the rest of the read (finish, usage, [DONE]) event by event.
                    k, prefix = _plain_prefix(raw, len(batch))
                    if k:
                        observe_itl((now - delivery.last_token_ns) / 1e9)
                        if k > 1:
                            itls.extend([0.0] * (k - 1))
                        delivery.last_token_ns = now
                        tokens = k
                        out.append(prefix)
                        batch = batch[k:]
                for payload in batch:
                    if _is_plain_token(payload):
                        # The common case, decided without parsing: a content delta, no finish, no usage.
                        observe_itl((now - delivery.last_token_ns) / 1e9)
                        delivery.last_token_ns = now
                        tokens += 1
                        out.append(b"data: " + payload + b"\n\n")
                        continue
                    if payload == b"[DONE]":
                        out.append(_DONE)
                        delivery.content_chunks += tokens
                        state.generated_in_flight += tokens
                        body = {"type": "http.response.body", "body": b"".join(out), "more_body": False}
                        await _timed_send(delivery, send, body)
                        delivery.complete = True
                        if delivery.completion_tokens == 0:
                            delivery.completion_tokens = delivery.content_chunks
                        await resp.finish()  # after the client has its [DONE]: keep the connection for reuse
                        return
                    obj = _load(payload)
                    if obj is None or "error" in obj:
                        delivery.content_chunks += tokens
                        state.generated_in_flight += tokens
                        if out:
                            await _timed_send(
                                delivery, send, {"type": "http.response.body", "body": b"".join(out), "more_body": True}
                            )
                        raise _event_error(obj, backend, mid_stream=True)
                    has_token, finish = _chunk_has_token(obj)
                    if has_token:
                        observe_itl((now - delivery.last_token_ns) / 1e9)
                        delivery.last_token_ns = now
                        tokens += 1
                    if finish or "usage" in obj:
                        _account_chunk(delivery, obj, finish)
                        if obj.get("usage") and not obj.get("choices") and not parsed.include_usage:
                            continue
                    out.append(b"data: " + payload + b"\n\n")
                delivery.content_chunks += tokens
                state.generated_in_flight += tokens
                if out:
                    delivery.sending_since_ns = now
                    await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                    delivery.sending_since_ns = 0
                    out = []
                try:
                    batch = await anext(batches)
                except StopAsyncIteration:
                    raise StreamInterrupted(
                        f"backend {backend} closed the stream before [DONE]; the answer is incomplete"
                    ) from None
        except BackendConnectError as exc:
            raise StreamInterrupted(f"backend {backend} failed mid-stream: {exc}; the answer is incomplete") from None
        except TimeoutError:
            raise StreamInterrupted(
                f"backend {backend} sent nothing for {self._first_token_timeout_s}s mid-stream"
            ) from None
        finally:
            if m is not None:
                _observe_many(m.itl, itls)


async def send_error(delivery: Delivery, send: Send, exc: GatewayError, headers: list[tuple[bytes, bytes]]) -> None:
    """Before the first byte an error is a response; after it, an SSE error event ends the stream (no [DONE])."""
    if delivery.started:
        if not delivery.complete:
            delivery.complete = True
            await send({"type": "http.response.body", "body": sse_error(exc), "more_body": False})
        return
    delivery.status = exc.status
    delivery.started = True
    await send({"type": "http.response.start", "status": exc.status, "headers": error_headers(exc) + headers})
    await send({"type": "http.response.body", "body": error_body(exc)})
    delivery.complete = True


async def replay(
    parsed: ParsedRequest, chunks: bytes, delivery: Delivery, send: Send, headers: list[tuple[bytes, bytes]]
) -> None:
    """A stored answer (the response cache), as JSON or as one SSE burst."""
    delivery.status = 200
    delivery.started = True
    content_type = SSE_HEADERS if parsed.stream else JSON_HEADERS
    await send({"type": "http.response.start", "status": 200, "headers": content_type + _who(delivery, headers)})
    await send({"type": "http.response.body", "body": chunks, "more_body": False})
    delivery.complete = True


def _who(delivery: Delivery, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-inferline-backend", delivery.backend.encode()),
        (b"x-inferline-model", delivery.model.encode()),
        *headers,
    ]


async def _timed_send(delivery: Delivery, send: Send, message: Message) -> None:
    delivery.sending_since_ns = time.monotonic_ns()
    await send(message)
    delivery.sending_since_ns = 0


def _hold_until_first_token(
    delivery: Delivery, parsed: ParsedRequest, batch: list[bytes], pending: list[bytes]
) -> int | None:
    """Account and hold the events of one read; the index of the first token (or finish), else None."""
    for i, payload in enumerate(batch):
        if payload == b"[DONE]":
            raise Retryable(UpstreamError(f"backend {delivery.backend} ended the stream without any output"))
        obj = _load(payload)
        if obj is None or "error" in obj:
            err = _event_error(obj, delivery.backend)
            if isinstance(err, InvalidRequest):
                raise err
            raise Retryable(err)
        has_token, finish = _chunk_has_token(obj)
        _account_chunk(delivery, obj, finish)
        if not (obj.get("usage") and not obj.get("choices") and not parsed.include_usage):
            pending.append(b"data: " + payload + b"\n\n")
        if has_token or finish:
            return i
    return None


def _account_chunk(delivery: Delivery, obj: dict[str, Any], finish: str | None) -> None:
    if finish:
        delivery.finish_reason = finish
    usage = obj.get("usage")
    if isinstance(usage, dict):
        delivery.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        delivery.completion_tokens = int(usage.get("completion_tokens") or 0)


def _chunk_has_token(obj: dict[str, Any]) -> tuple[bool, str | None]:
    """(carries generated content, finish_reason) for one chunk of chat or text completion."""
    choices = obj.get("choices")
    if not choices:
        return False, None
    c0 = choices[0]
    finish = c0.get("finish_reason")
    delta = c0.get("delta")
    if delta is not None:
        has = bool(delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"))
    else:
        has = bool(c0.get("text"))
    return has, finish


def _is_plain_token(payload: bytes) -> bool:
    """A chunk carrying generated text and nothing else to account (no finish, usage or error).

    Byte checks on the compact JSON that vLLM, llama.cpp, SGLang and OpenAI emit. Anything else (other
    spacing, tool calls, reasoning) is simply parsed: this only ever skips work, never changes a result.
    """
    return (
        b'"finish_reason":null' in payload
        and (b'"content":"' in payload or b'"text":"' in payload)
        and b'"content":""' not in payload
        and b'"text":""' not in payload
        and b'"usage":{' not in payload
        and b'"error"' not in payload
    )


def _strict_framing(raw: bytes, n: int) -> bool:
    """`raw` is exactly n events `data: X\n\n`, X one line: then the payloads are the X, and raw is what the
    relay would write for them. (Newlines only in n `\n\n` pairs, n `data: ` prefixes, one per line.)"""
    return (
        raw[:6] == b"data: "
        and raw.count(b"\n") == 2 * n
        and raw.count(b"\n\n") == n
        and raw.count(b"data: ") == n
        and b"\r" not in raw
    )


# Bytes that only a non-plain event holds: the relay must parse it (finish, usage, error, empty delta, end).
_NOT_PLAIN = (b'"finish_reason":"', b'"usage":{', b'"error"', b'"content":""', b'"text":""', b"data: [DONE]")


def _plain_prefix(raw: bytes, n: int) -> tuple[int, bytes]:
    """(k, bytes of the first k events) where those k events of the n in `raw` are each what
    _is_plain_token accepts: one choice with non-empty content or text, finish_reason null, no usage, no
    error. The byte patterns cannot occur inside JSON string values (quotes are escaped there), so
    counting them over the prefix counts fields. (0, b"") when the framing is not the exact one."""
    if not _strict_framing(raw, n):
        return 0, b""
    cut = len(raw)
    for marker in _NOT_PLAIN:
        i = raw.find(marker, 0, cut)
        if i != -1:
            cut = i
    if cut < len(raw):
        cut = raw.rfind(b"data: ", 0, cut)  # the start of the first event that needs parsing
        if cut <= 0:
            return 0, b""
    prefix = raw[:cut] if cut < len(raw) else raw
    k = prefix.count(b"data: ")
    if (
        prefix.count(b'"finish_reason":null') == k
        and prefix.count(b'"finish_reason":') == k
        and prefix.count(b'"index":') == k
        and prefix.count(b'"content":"') + prefix.count(b'"text":"') == k
    ):
        return k, prefix
    return 0, b""


def _after(batch: list[bytes], k: int) -> list[bytes]:
    """batch[k:], keeping the raw bytes of those events when the framing allows slicing them out."""
    rest = batch[k:]
    raw: bytes | None = getattr(batch, "raw", None)
    if raw is None or not rest or not _strict_framing(raw, len(batch)):
        return rest
    pos = 0
    for _ in range(k):
        pos = raw.index(b"data: ", pos + 1)
    return EventBatch(rest, raw[pos:])


def _observe_many(hist: Any, values: list[float]) -> None:
    """Histogram.observe for every value, in one pass: prometheus_client's observe() takes a lock and
    walks the buckets per call (~2 µs, once per token otherwise). Same bucket rule (value <= bound)."""
    if not values:
        return
    bounds = hist._upper_bounds
    counts = [0] * len(bounds)
    zeros = values.count(0.0)  # every token of a read after its first: all in the lowest bucket
    if zeros:
        counts[bisect_left(bounds, 0.0)] = zeros
    if zeros < len(values):
        for v in values:
            if v:
                counts[bisect_left(bounds, v)] += 1
    buckets = hist._buckets
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    hist._sum.inc(sum(values))


def _load(payload: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _event_error(obj: dict[str, Any] | None, backend: str, mid_stream: bool = False) -> GatewayError:
    if obj is None:
        return (StreamInterrupted if mid_stream else UpstreamError)(f"backend {backend} sent a malformed event")
    err = obj.get("error")
    message = err.get("message") if isinstance(err, dict) else str(err)
    text = f"backend {backend} reported an error: {message}"
    if mid_stream:
        return StreamInterrupted(text)
    etype = err.get("type") if isinstance(err, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    if etype in ("invalid_request_error", "BadRequestError") or code == 400:
        return InvalidRequest(text)
    return UpstreamError(text)
