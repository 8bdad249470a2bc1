"""relay: try backends until one answers, then pass its answer to the client chunk by chunk.

Before the first content token nothing has reached the client, so a failing backend is retried on
the next candidate. After it, the stream belongs to the client: an engine failure ends it with an
SSE error event, never a clean-looking [DONE].
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

import orjson

from inferline.backends.base import Backend, BackendConnectError, EventBatch, UpstreamResponse
from inferline.config import RoutingConfig
from inferline.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    Outcome,
    PayloadTooLarge,
    StreamInterrupted,
    UpstreamError,
    UpstreamTimeout,
    sse_error,
)
from inferline.metrics import GatewayMetrics, ModelMetrics
from inferline.types import Send

from .context import ParsedRequest, RequestContext
from .parse import check_context
from .route import Router, Target

_MAX_UPSTREAM_BODY_BYTES = 32 * 1024 * 1024
_MAX_ERROR_BODY_BYTES = 64 * 1024
_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tell nginx-style proxies not to buffer the stream
]
JSON_HEADERS = [(b"content-type", b"application/json")]


class _Retryable(Exception):
    """This backend failed before any token reached the client: try the next one."""

    def __init__(self, error: GatewayError, count_failure: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.count_failure = count_failure


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
        # Always ask for usage: token accounting needs it; the chunk is dropped if the client didn't ask.
        opts = dict(body.get("stream_options") or {})
        opts["include_usage"] = True
        body["stream_options"] = opts
    return orjson.dumps(body)


def route_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-inferline-backend", ctx.backend.encode()),
        (b"x-inferline-model", ctx.model.encode()),
        (b"x-request-id", ctx.request_id.encode()),
        *ctx.extra_headers,
    ]


def _unsupported(parsed: ParsedRequest, target: Target) -> None:
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


async def _upstream_error(resp: UpstreamResponse, backend: str) -> Exception:
    """Map an engine's non-200 answer: the client's mistakes keep their 4xx; the engine's are retried."""
    try:
        raw = await resp.read(_MAX_ERROR_BODY_BYTES)
    except BackendConnectError:
        raw = b""
    finally:
        resp.close()
    message = raw[:500].decode("utf-8", "replace").strip()
    try:
        err = orjson.loads(raw)
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
        return _Retryable(BackendUnavailable(text, retry_after_s=1, backend=backend), count_failure=False)
    if status in (408, 504):
        return _Retryable(UpstreamTimeout(text, backend=backend))
    if status >= 500:
        return _Retryable(UpstreamError(text, backend=backend))
    # 401/403/404 from an engine are configuration problems of ours, not the client's.
    return _Retryable(UpstreamError(text, backend=backend))


async def _fit_output(parsed: ParsedRequest, backend: Backend, context_tokens: int, model: str) -> int | None:
    """Make prompt + output fit an engine that would otherwise hang at a full context.

    Returns a max_tokens to send (when the client gave none), or None to keep the client's. Counting
    tokens costs two local calls to the engine, so it only happens when the byte bound can't decide.
    """
    requested = parsed.max_tokens
    if requested is not None and parsed.prompt_tokens_upper + requested <= context_tokens:
        return None
    exact = await backend.count_prompt_tokens(parsed.body)
    prompt = exact if exact is not None else parsed.prompt_tokens_upper
    if prompt >= context_tokens:
        raise ContextLengthExceeded(
            f"the prompt is {prompt} tokens; model {model} has a context of {context_tokens} tokens",
            param="messages" if parsed.kind == "chat" else "prompt",
        )
    room = context_tokens - prompt
    if requested is None:
        return room
    if requested > room:
        raise ContextLengthExceeded(
            f"prompt ({prompt} tokens) + `max_tokens` ({requested}) exceeds the context of model {model} "
            f"({context_tokens} tokens); ask for at most {room}",
            param="max_tokens",
        )
    return None


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


class Relay:
    def __init__(self, routing: RoutingConfig, metrics: GatewayMetrics, model_contexts: dict[str, int | None]):
        self._routing = routing
        self._metrics = metrics
        self._model_contexts = model_contexts

    async def serve(
        self,
        ctx: RequestContext,
        parsed: ParsedRequest,
        first: Target,
        router: Router,
        send: Send,
        mm: dict[str, ModelMetrics],
    ) -> None:
        """Serve from `first` (a slot the queue granted); on a failure before the first token, retry on
        another backend with room. Every granted slot is released exactly once."""
        target: Target | None = first
        tried: set[str] = set()
        last: GatewayError | None = None
        while target is not None:
            tried.add(target.state.name)
            try:
                await self._attempt(ctx, parsed, target, send, mm)
                return
            except _Retryable as exc:
                last = exc.error
                if exc.count_failure:
                    target.state.record_failure(exc.error.message, self._routing, self._metrics)
            except StreamInterrupted as exc:
                target.state.record_failure(exc.message, self._routing, self._metrics)
                raise
            finally:
                router.release(target)
            target = None
            if ctx.attempts < self._routing.max_attempts:
                target = router.retry_target(parsed.model, ctx.model, tried, first.kv_tokens)
                if target is not None:
                    self._metrics.retries.labels(target.model, target.state.name).inc()
        assert last is not None
        if ctx.attempts > 1:
            last.message += f" (tried {ctx.attempts} backends)"
        raise last

    async def _attempt(
        self, ctx: RequestContext, parsed: ParsedRequest, target: Target, send: Send, mm: dict[str, ModelMetrics]
    ) -> None:
        state = target.state
        backend = state.backend
        _unsupported(parsed, target)
        context_tokens = self._model_contexts.get(target.model) or backend.context_tokens
        check_context(parsed, context_tokens, target.model)
        max_tokens = None
        if backend.caps_output_to_context and context_tokens:
            max_tokens = await _fit_output(parsed, backend, context_tokens, target.model)
        ctx.attempts += 1
        ctx.backend, ctx.model = backend.name, target.model
        priority = ctx.priority if backend.send_priority else None
        try:
            resp = await backend.post(parsed.path, upstream_body(parsed, backend.upstream_model, max_tokens, priority))
            if resp.status == 400 and priority is not None:
                err = await _upstream_error(resp, backend.name)
                if "priority" not in str(err).lower():
                    raise err
                # An engine not started with --scheduling-policy priority: stop sending it, resend once.
                backend.send_priority = False
                resp = await backend.post(parsed.path, upstream_body(parsed, backend.upstream_model, max_tokens))
        except BackendConnectError as exc:
            raise _Retryable(
                BackendUnavailable(f"backend {backend.name} unreachable: {exc}", retry_after_s=2)
            ) from None
        except TimeoutError as exc:
            raise _Retryable(UpstreamTimeout(f"backend {backend.name}: {exc}")) from None
        if resp.status != 200:
            raise await _upstream_error(resp, backend.name)
        try:
            if parsed.stream:
                await self._stream(ctx, parsed, resp, send, mm[target.model])
            else:
                await self._whole(ctx, resp, send)
        finally:
            resp.close()
        state.record_success()

    async def _whole(self, ctx: RequestContext, resp: UpstreamResponse, send: Send) -> None:
        try:
            raw = await resp.read(_MAX_UPSTREAM_BODY_BYTES)
        except BackendConnectError as exc:
            raise _Retryable(UpstreamError(f"backend {ctx.backend} failed mid-response: {exc}")) from None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Retryable(UpstreamError(f"backend {ctx.backend} sent a body that is not JSON")) from None
        usage = obj.get("usage") if isinstance(obj, dict) else None
        if isinstance(usage, dict):
            ctx.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            ctx.completion_tokens = int(usage.get("completion_tokens") or 0)
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if choices:
            ctx.finish_reason = choices[0].get("finish_reason")
        ctx.first_token_ns = ctx.last_token_ns = time.monotonic_ns()
        ctx.status = 200
        ctx.response_body = raw
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS + route_headers(ctx)})
        await send({"type": "http.response.body", "body": raw, "more_body": False})
        ctx.response_complete = True

    async def _stream(
        self, ctx: RequestContext, parsed: ParsedRequest, resp: UpstreamResponse, send: Send, mm: ModelMetrics
    ) -> None:
        batches = resp.event_batches()
        pending: list[bytes] = []
        rest: list[bytes] = []
        # Phase 1: hold events until the first token, so a backend that fails now can be retried.
        while True:
            try:
                batch = await anext(batches)
            except StopAsyncIteration:
                raise _Retryable(UpstreamError(f"backend {ctx.backend} closed the stream before any token")) from None
            except BackendConnectError as exc:
                raise _Retryable(UpstreamError(f"backend {ctx.backend} failed before the first token: {exc}")) from None
            except TimeoutError:
                raise _Retryable(
                    UpstreamTimeout(f"backend {ctx.backend}: no token within {self._routing.first_token_timeout_s}s")
                ) from None
            first = self._before_first_token(ctx, parsed, batch, pending)
            if first is not None:
                rest = _after(batch, first + 1)
                break
        now = time.monotonic_ns()
        ctx.status = 200
        ctx.response_started = True
        ctx.first_token_ns = ctx.last_token_ns = now
        ctx.content_chunks = 1
        mm.ttft.observe((now - ctx.started_ns) / 1e9)
        await self._send(
            ctx,
            send,
            {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + route_headers(ctx)},
        )
        # Phase 2: the stream is the client's. What one read from the engine brought goes out in one send,
        # and the next read waits for that send: the client's pace is ours (backpressure). The held events
        # go out with the rest of their read: with the head, one write (and one wake-up of the client).
        itls: list[float] = []  # observed once, at the end: one histogram update per request, not per token
        observe_itl = itls.append
        monotonic_ns = time.monotonic_ns
        batch = rest
        out: list[bytes] = pending
        try:
            while True:
                now = monotonic_ns()
                raw: bytes | None = getattr(batch, "raw", None)
                if raw is not None:
                    # The common case, decided by a few scans of the read's bytes: its leading events are
                    # content deltas only, in the exact `data: {...}\n\n` framing we would write. They are
                    # forwarded as they came; the rest of the read (finish, usage, [DONE]) goes event by event.
                    k, prefix = _plain_prefix(raw, len(batch))
                    if k:
                        observe_itl((now - ctx.last_token_ns) / 1e9)
                        if k > 1:
                            itls.extend([0.0] * (k - 1))
                        ctx.last_token_ns = now
                        ctx.content_chunks += k
                        out.append(prefix)
                        batch = batch[k:]
                for payload in batch:
                    if _is_plain_token(payload):
                        # The common case, decided without parsing: a content delta, no finish, no usage.
                        observe_itl((now - ctx.last_token_ns) / 1e9)
                        ctx.last_token_ns = now
                        ctx.content_chunks += 1
                        out.append(b"data: " + payload + b"\n\n")
                        continue
                    if payload == b"[DONE]":
                        out.append(_DONE)
                        await self._send(
                            ctx, send, {"type": "http.response.body", "body": b"".join(out), "more_body": False}
                        )
                        ctx.response_complete = True
                        if ctx.completion_tokens == 0:
                            ctx.completion_tokens = ctx.content_chunks
                        await resp.finish()  # after the client has its [DONE]: keep the connection for reuse
                        return
                    obj = _load(payload)
                    if obj is None or "error" in obj:
                        if out:
                            await self._send(
                                ctx, send, {"type": "http.response.body", "body": b"".join(out), "more_body": True}
                            )
                        raise _event_error(obj, ctx.backend, mid_stream=True)
                    has_token, finish = _chunk_has_token(obj)
                    if has_token:
                        observe_itl((now - ctx.last_token_ns) / 1e9)
                        ctx.last_token_ns = now
                        ctx.content_chunks += 1
                    if finish or "usage" in obj:
                        self._account_chunk(ctx, obj, finish)
                        if obj.get("usage") and not obj.get("choices") and not parsed.include_usage:
                            continue
                    out.append(b"data: " + payload + b"\n\n")
                if out:
                    ctx.sending_since_ns = now
                    await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                    ctx.sending_since_ns = 0
                    out = []
                try:
                    batch = await anext(batches)
                except StopAsyncIteration:
                    raise StreamInterrupted(
                        f"backend {ctx.backend} closed the stream before [DONE]; the answer is incomplete"
                    ) from None
        except BackendConnectError as exc:
            raise StreamInterrupted(
                f"backend {ctx.backend} failed mid-stream: {exc}; the answer is incomplete"
            ) from None
        except TimeoutError:
            raise StreamInterrupted(
                f"backend {ctx.backend} sent nothing for {self._routing.first_token_timeout_s}s mid-stream"
            ) from None
        finally:
            _observe_many(mm.itl, itls)

    def _before_first_token(
        self, ctx: RequestContext, parsed: ParsedRequest, batch: list[bytes], pending: list[bytes]
    ) -> int | None:
        """Account and hold the events of one read; the index of the first token (or finish), else None."""
        for i, payload in enumerate(batch):
            if payload == b"[DONE]":
                raise _Retryable(UpstreamError(f"backend {ctx.backend} ended the stream without any output"))
            obj = _load(payload)
            if obj is None or "error" in obj:
                err = _event_error(obj, ctx.backend)
                if isinstance(err, InvalidRequest):
                    raise err
                raise _Retryable(err)
            has_token, finish = _chunk_has_token(obj)
            self._account_chunk(ctx, obj, finish)
            if not (obj.get("usage") and not obj.get("choices") and not parsed.include_usage):
                pending.append(b"data: " + payload + b"\n\n")
            if has_token or finish:
                return i
        return None

    @staticmethod
    async def _send(ctx: RequestContext, send: Send, message: dict[str, Any]) -> None:
        ctx.sending_since_ns = time.monotonic_ns()
        await send(message)
        ctx.sending_since_ns = 0

    @staticmethod
    def _account_chunk(ctx: RequestContext, obj: dict[str, Any], finish: str | None) -> None:
        if finish:
            ctx.finish_reason = finish
        usage = obj.get("usage")
        if isinstance(usage, dict):
            ctx.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            ctx.completion_tokens = int(usage.get("completion_tokens") or 0)


async def end_stream_with_error(ctx: RequestContext, send: Send, exc: GatewayError) -> None:
    """Once headers are out an error must travel in-band: an error event, and no [DONE]."""
    ctx.error = exc
    ctx.outcome = exc.outcome
    await send({"type": "http.response.body", "body": sse_error(exc), "more_body": False})
    ctx.response_complete = True


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


__all__ = ["Outcome", "Relay", "end_stream_with_error", "route_headers", "upstream_body"]
