"""relay: the engine's answer to the client, bytes in and bytes out; errors after the first byte in-band.

Before the first content token nothing has reached the client: the engine's early events (role chunk)
are held, and a failure raises `Retryable` so route can try another engine. After it, the stream belongs
to the client: an engine failure ends it with an SSE error event (`stream_interrupted`), never a
clean-looking [DONE]. What one network read from the engine brought goes out in one `send`, and the next
read waits for that send: the client's pace is the engine's (backpressure). Per chunk: one orjson parse,
no logging, no label lookups.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from typing import Any

import orjson

from inferline.backends.base import BackendConnectError, UpstreamResponse
from inferline.backends.pool import BackendState
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
        out: list[bytes] = []  # payloads to write, framed once per send
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
            first = _hold_until_first_token(delivery, parsed, batch, out)
            if first is not None:
                batch = batch[first + 1 :]
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
        # write. Every event is parsed (orjson: ~0.5 us for a chunk, cheaper than scanning the bytes for
        # what would need parsing); inter-token gaps are observed once, at the end.
        itls: list[float] = []
        monotonic_ns = time.monotonic_ns
        include_usage = parsed.include_usage
        shape = TokenShape()
        try:
            while True:
                tokens = 0
                now = monotonic_ns()
                for payload in batch:
                    if shape.matches(payload):
                        tokens += 1
                        out.append(payload)
                        continue
                    if payload == b"[DONE]":
                        out.append(payload)
                        _count_tokens(delivery, state, itls, tokens, now)
                        body = {"type": "http.response.body", "body": _frame(out), "more_body": False}
                        await _timed_send(delivery, send, body)
                        delivery.complete = True
                        if delivery.completion_tokens == 0:
                            delivery.completion_tokens = delivery.content_chunks
                        await resp.finish()  # after the client has its [DONE]: keep the connection for reuse
                        return
                    obj = _load(payload)
                    if obj is None or "error" in obj:
                        _count_tokens(delivery, state, itls, tokens, now)
                        if out:
                            more: Message = {"type": "http.response.body", "body": _frame(out), "more_body": True}
                            await _timed_send(delivery, send, more)
                        raise _event_error(obj, backend, mid_stream=True)
                    has_token, finish = _chunk_has_token(obj)
                    if has_token:
                        tokens += 1
                        if finish is None and "usage" not in obj:
                            shape.learn(payload, obj)
                    if finish or "usage" in obj:
                        _account_chunk(delivery, obj, finish)
                        if obj.get("usage") and not obj.get("choices") and not include_usage:
                            continue
                    out.append(payload)
                _count_tokens(delivery, state, itls, tokens, now)
                if out:
                    delivery.sending_since_ns = now
                    await send({"type": "http.response.body", "body": _frame(out), "more_body": True})
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


# A byte a JSON string may only hold escaped or that needs checking: control bytes, quote, backslash,
# DEL and non-ASCII (whose UTF-8 orjson would validate).
_NOT_PLAIN_TEXT = re.compile(rb"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class TokenShape:
    """The bytes of a stream's plain token events around their text, learned from one parsed event.

    Engines write every token event of a stream alike but for the text (vLLM, llama.cpp, SGLang, OpenAI):
    `{"id":"c1",...,"delta":{"content":"` TEXT `"},"logprobs":null,"finish_reason":null}]}`. An event that
    is exactly that prefix and suffix around a non-empty TEXT of printable ASCII other than quote and
    backslash is the learned event with other text: a token, no finish, no usage, no error, as parsing
    would find (which it skips: ~0.2 us instead of ~1 us). Anything else (escapes, other characters,
    control bytes, invalid JSON) is parsed. A shape is kept only once the bytes around the slot, with
    another text in it, parse as a token event whose text is that one: the slot is the text's."""

    __slots__ = ("_attempts", "_prefix", "_prefix_len", "_short", "_suffix", "_suffix_len")

    # Learning costs ~4 us; a stream whose events never yield a shape (its texts recur elsewhere in the
    # event, say) stops trying after this many.
    MAX_ATTEMPTS = 4

    def __init__(self) -> None:
        self._prefix = self._suffix = b""
        self._prefix_len = self._suffix_len = 0
        self._short = 1 << 30  # longer than any event: matches nothing until learned
        self._attempts = 0

    def learn(self, payload: bytes, obj: dict[str, Any]) -> None:
        """From a parsed token event (has text, no finish, no usage); no shape if its text is ambiguous.

        An event already in the learned frame (parsed only for its text: non-ASCII, escapes) teaches
        nothing new, so it is not relearned: one check instead of ~4 us per such token."""
        if self._attempts >= self.MAX_ATTEMPTS or (
            self._prefix and payload.startswith(self._prefix) and payload.endswith(self._suffix)
        ):
            return
        self._attempts += 1
        choices = obj["choices"]
        if len(choices) != 1:
            return
        text = _choice_text(choices[0])
        if not isinstance(text, str) or not text:
            return
        quoted = orjson.dumps(text)
        if payload.count(quoted) != 1:  # the text also elsewhere, or escaped otherwise than orjson would
            return
        at = payload.index(quoted)
        prefix, suffix = payload[: at + 1], payload[at + len(quoted) - 1 :]
        # Where the engine escaped its text otherwise than orjson (\u0078 for x), the one match may be
        # another string of the event (a key): prove the slot with a text the event does not hold.
        probe = "a" if text != "a" else "b"
        sample = _load(prefix + probe.encode() + suffix)
        if sample is None or "error" in sample or "usage" in sample or _chunk_has_token(sample) != (True, None):
            return
        if len(sample["choices"]) != 1 or _choice_text(sample["choices"][0]) != probe:
            return
        self._prefix, self._suffix = prefix, suffix
        self._prefix_len, self._suffix_len = len(prefix), len(suffix)
        self._short = self._prefix_len + self._suffix_len

    def matches(self, payload: bytes) -> bool:
        n = len(payload)
        if n <= self._short or not payload.startswith(self._prefix) or not payload.endswith(self._suffix):
            return False
        return _NOT_PLAIN_TEXT.search(payload, self._prefix_len, n - self._suffix_len) is None


def _choice_text(choice: dict[str, Any]) -> Any:
    """A choice's generated text: the delta's content (chat) or its text (completions)."""
    delta = choice.get("delta")
    return delta.get("content") if isinstance(delta, dict) else choice.get("text")


def _count_tokens(delivery: Delivery, state: BackendState, itls: list[float], tokens: int, now: int) -> None:
    """Account the tokens of one read: the first one's gap since the last token, 0 for the rest (they
    arrived together)."""
    if tokens:
        itls.append((now - delivery.last_token_ns) / 1e9)
        if tokens > 1:
            itls.extend([0.0] * (tokens - 1))
        delivery.last_token_ns = now
        delivery.content_chunks += tokens
        state.generated_in_flight += tokens


def _frame(payloads: list[bytes]) -> bytes:
    """SSE events `data: X\n\n` for the payloads, in one buffer."""
    return b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n" if payloads else b""


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
            pending.append(payload)
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
