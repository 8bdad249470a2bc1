"""One call's state and decisions, sans I/O: shared by Client and AsyncClient, so both parse the same way.

A `_Call` builds each attempt's request body, turns SSE payloads into text deltas (charging budgets
and limits, stamping timings), says how long the next socket read may wait and which timeout fires,
and decides after a failure whether to retry, resume or raise. The sync and async clients only move
bytes and sleep.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ._config import Budget, Retry, Timeouts
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BudgetExceeded,
    ConnectTimeout,
    FirstTokenTimeout,
    IdleTimeout,
    InferlineError,
    RateLimited,
    ServiceUnavailable,
    StreamError,
    TotalTimeout,
    error_from_event,
)
from ._models import Completion, Usage
from ._sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder

__all__ = ["BACKEND_HEADER", "MODEL_HEADER", "StreamView"]

BACKEND_HEADER = "x-inferline-backend"
MODEL_HEADER = "x-inferline-model"
MAX_ERROR_BODY_BYTES = 64 * 1024
# After [DONE] the body's end (the chunked terminator) normally follows at once; reading it lets the
# connection be reused. A server that keeps the body open gets this long before we close instead.
DRAIN_TIMEOUT_S = 0.5
DRAIN_MAX_READS = 4

# Resume asks the server to continue the final (assistant) message instead of starting a new turn:
# vLLM's and SGLang's chat-template switches; llama.cpp continues a trailing assistant message by itself.
RESUME_FIELDS: Mapping[str, object] = {"continue_final_message": True, "add_generation_prompt": False}

_RESERVED = frozenset({"stream", "messages", "prompt", "model", "max_tokens"})
_loads = orjson.loads


class _Call:
    """Everything one stream() call tracks across its attempts."""

    __slots__ = (
        "_attempt_charged",
        "_attempt_chunks",
        "_attempt_usage",
        "_body",
        "_budget",
        "_budget_capped",
        "_chat",
        "_max_chars",
        "_max_chunks",
        "_max_event_bytes",
        "_original",
        "_parts",
        "_retry",
        "_usage_before",
        "attempts",
        "backend",
        "chars",
        "chunks",
        "decoder",
        "done",
        "finish_reason",
        "first_token_deadline",
        "model",
        "path",
        "resume",
        "resumed",
        "t_first",
        "t_last",
        "t_start",
        "timeouts",
        "total_deadline",
    )

    def __init__(
        self,
        *,
        messages: Sequence[Mapping[str, Any]] | None,
        prompt: str | None,
        model: str | None,
        max_tokens: int | None,
        sampling: Mapping[str, Any],
        budget: Budget | None,
        timeouts: Timeouts,
        retry: Retry,
        resume: bool,
        max_chunks: int | None,
        max_chars: int | None,
        keep_text: bool,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        if (messages is None) == (prompt is None):
            raise ValueError("pass exactly one of `messages` (chat) or `prompt` (completions)")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"`max_tokens` must be >= 1; got {max_tokens}")
        for name, limit in (("max_chunks", max_chunks), ("max_chars", max_chars)):
            if limit is not None and limit < 1:
                raise ValueError(f"`{name}` must be >= 1; got {limit}")
        if resume and not keep_text:
            raise ValueError("resume=True needs keep_text=True: the partial answer is sent back")
        bad = _RESERVED.intersection(sampling)
        if bad:
            raise ValueError(f"{sorted(bad)} are set by the client; pass them as keyword arguments")
        if sampling.get("n", 1) != 1:
            raise ValueError(f"`n` must be 1 (one stream of deltas per call); got {sampling['n']!r}")
        self._chat = messages is not None
        self.path = "chat/completions" if self._chat else "completions"
        body: dict[str, Any] = dict(sampling)
        if model is not None:
            body["model"] = model
        if messages is not None:
            body["messages"] = [dict(m) for m in messages]
        else:
            body["prompt"] = prompt
        # Always ask for usage: it reconciles budgets and is the only exact token count.
        body["stream_options"] = {**dict(sampling.get("stream_options") or {}), "include_usage": True}
        body["stream"] = True
        self._budget_capped = False
        if budget is not None:
            remaining = budget.remaining_tokens
            if remaining <= 0:
                raise BudgetExceeded(f"budget of {budget.total_tokens} tokens is spent", limit="budget")
            if max_tokens is None or remaining < max_tokens:
                max_tokens, self._budget_capped = remaining, True
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        self._body = body
        self._original: Mapping[str, Any] = body
        self._budget = budget
        self._retry = retry
        self._max_chunks = max_chunks
        self._max_chars = max_chars
        self._max_event_bytes = max_event_bytes
        self._parts: list[str] | None = [] if keep_text else None
        self._usage_before: Usage | None = None
        self._attempt_usage: Usage | None = None
        self._attempt_chunks = 0
        self._attempt_charged = 0  # tokens this attempt has charged to the budget
        self.timeouts = timeouts
        self.resume = resume
        self.decoder = SSEDecoder(max_event_bytes)
        self.attempts = 0
        self.resumed = 0
        self.chunks = 0
        self.chars = 0
        self.done = False
        self.finish_reason: str | None = None
        self.backend: str | None = None
        self.model: str | None = None
        self.t_start = time.monotonic()
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.first_token_deadline: float | None = None
        self.total_deadline = None if timeouts.total_s is None else self.t_start + timeouts.total_s

    # --- per attempt --------------------------------------------------------------------------------

    def begin_attempt(self) -> bytes:
        """Start an attempt: fresh parser and deadlines; returns the JSON body to POST."""
        if not self.attempts:  # the call starts when it is first sent, not when stream() was called
            self.t_start = time.monotonic()
            total = self.timeouts.total_s
            self.total_deadline = None if total is None else self.t_start + total
        self.attempts += 1
        self.decoder = SSEDecoder(self._max_event_bytes)
        self._attempt_chunks = 0
        self._attempt_charged = 0
        self._attempt_usage = None
        self.done = False
        self.finish_reason = None
        ft = self.timeouts.first_token_s
        self.first_token_deadline = None if ft is None else time.monotonic() + ft
        return orjson.dumps(self._body)

    def send_timeouts(self) -> tuple[float | None, float | None]:
        """(connect, read-until-headers) limits for sending the request, clipped to the total deadline."""
        now = time.monotonic()
        connect = self.timeouts.connect_s
        read = None if self.first_token_deadline is None else max(0.0, self.first_token_deadline - now)
        if self.total_deadline is not None:
            left = self.total_deadline - now
            if left <= 0:
                raise self.timeout_error(TotalTimeout)
            connect = left if connect is None else min(connect, left)
            read = left if read is None else min(read, left)
        return connect, read

    def on_headers(self, headers: Mapping[str, str]) -> None:
        self.backend = headers.get(BACKEND_HEADER)
        self.model = headers.get(MODEL_HEADER)

    def read_timeout(self) -> tuple[float | None, type[APITimeoutError]]:
        """How long the next socket read may block, and the timeout to raise if it does."""
        total = self.total_deadline
        if self._attempt_chunks:
            idle = self.timeouts.idle_s
            if total is None:
                return idle, IdleTimeout
            left = total - time.monotonic()
            return (idle, IdleTimeout) if idle is not None and idle < left else (left, TotalTimeout)
        first = self.first_token_deadline
        if first is None and total is None:
            return None, FirstTokenTimeout
        now = time.monotonic()
        if total is not None and (first is None or total < first):
            return total - now, TotalTimeout
        assert first is not None
        return first - now, FirstTokenTimeout

    def timeout_error(self, cls: type[APITimeoutError]) -> APITimeoutError:
        t = self.timeouts
        limit = {
            ConnectTimeout: t.connect_s,
            FirstTokenTimeout: t.first_token_s,
            IdleTimeout: t.idle_s,
            TotalTimeout: t.total_s,
        }.get(cls)
        what = {
            ConnectTimeout: "no connection",
            FirstTokenTimeout: "no first token",
            IdleTimeout: "no data from the server",
            TotalTimeout: "the call did not finish",
        }.get(cls, "timed out")
        return cls(f"{what} within {limit}s", timeout_s=limit or 0.0)

    def on_payload(self, payload: bytes, now: float) -> str | None:
        """One SSE data payload -> the text delta to yield (None for role, finish and usage chunks)."""
        if payload == b"[DONE]":
            self.done = True
            return None
        try:
            obj = _loads(payload)
            choices = obj.get("choices")
            text = None
            if choices:
                choice = choices[0]
                if self._chat:
                    delta = choice.get("delta")
                    text = delta.get("content") if delta else None
                else:
                    text = choice.get("text")
                reason = choice.get("finish_reason")
                if reason is not None:
                    self.finish_reason = reason
            elif "error" in obj:
                raise error_from_event(obj["error"])
            usage = obj.get("usage")
        except (orjson.JSONDecodeError, AttributeError, TypeError, IndexError) as exc:
            raise StreamError(f"malformed chunk: {payload[:200]!r}", transient=True) from exc
        accepted = self._accept(text, now) if text else None
        if usage:
            self._on_usage(usage)
        return accepted

    def _accept(self, text: str, now: float) -> str:
        if self._max_chunks is not None and self.chunks >= self._max_chunks:
            raise BudgetExceeded(f"max_chunks={self._max_chunks} reached", limit="max_chunks")
        if self._max_chars is not None and self.chars + len(text) > self._max_chars:
            raise BudgetExceeded(f"max_chars={self._max_chars} reached", limit="max_chars")
        if self._budget is not None:
            if not self._budget._take(1):
                raise BudgetExceeded(f"budget of {self._budget.total_tokens} tokens is spent", limit="budget")
            self._attempt_charged += 1
        self.chunks += 1
        self._attempt_chunks += 1
        self.chars += len(text)
        if self._parts is not None:
            self._parts.append(text)
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        return text

    def _on_usage(self, raw: object) -> None:
        if not isinstance(raw, dict):
            return
        try:
            prompt = int(raw.get("prompt_tokens") or 0)
            completion = int(raw.get("completion_tokens") or 0)
            total = int(raw.get("total_tokens") or prompt + completion)
        except (TypeError, ValueError):
            return
        self._attempt_usage = Usage(prompt, completion, total)
        if self._budget is not None:  # usage may come once at the end or with every chunk (vLLM option)
            self._budget._adjust(completion - self._attempt_charged)
            self._attempt_charged = completion

    def end_of_body(self) -> None:
        """The byte stream ended: no [DONE] means truncated; a budget that capped the answer raises."""
        if not self.done:
            cut = " mid-event" if self.decoder.pending_bytes() else ""
            raise StreamError(f"stream ended{cut} without [DONE]")
        if (
            self._budget_capped
            and self.finish_reason == "length"
            and self._budget is not None
            and self._budget.remaining_tokens <= 0
        ):
            raise BudgetExceeded(
                f"budget of {self._budget.total_tokens} tokens is spent", limit="budget", usage=self.usage
            )

    # --- failure handling ----------------------------------------------------------------------------

    def retry_delay(self, exc: InferlineError) -> float | None:
        """Seconds to wait before the next attempt, or None to raise `exc` now."""
        if self.attempts >= self._retry.max_attempts or isinstance(exc, (BudgetExceeded, TotalTimeout)):
            return None
        if self.chunks:  # text was yielded: never start over; continue only if asked
            if not self.resume or self._parts is None or not _resumable(exc):
                return None
        elif not _retryable_before_first_token(exc, self._retry.retry_statuses):
            return None
        delay: float
        if isinstance(exc, (RateLimited, ServiceUnavailable)) and exc.retry_after_s is not None:
            if exc.retry_after_s > self._retry.max_retry_after_s:
                return None
            delay = exc.retry_after_s
        else:
            delay = self._retry.backoff_s(self.attempts)
        if self.total_deadline is not None and time.monotonic() + delay >= self.total_deadline:
            return None
        return delay

    def prepare_retry(self) -> None:
        """Before the next attempt: if text was already yielded, turn the request into a continuation.

        The continuation is rebuilt from the original request each time: the whole partial answer goes
        back as the final assistant message (or is appended to the prompt), and max_tokens shrinks by
        the chunks already received.
        """
        if self._attempt_usage is not None or self._attempt_chunks:
            done = self._attempt_usage or Usage(0, self._attempt_chunks, self._attempt_chunks)
            self._usage_before = done if self._usage_before is None else self._usage_before + done
        if not self.chunks:
            return
        partial = self.text
        body = dict(self._original)
        if self._chat:
            messages = [dict(m) for m in self._original["messages"]]
            if messages and messages[-1].get("role") == "assistant":  # the caller's own prefill
                messages[-1]["content"] = str(messages[-1].get("content") or "") + partial
            else:
                messages.append({"role": "assistant", "content": partial})
            body.update(RESUME_FIELDS)
            body["messages"] = messages
        else:
            body["prompt"] = str(self._original["prompt"]) + partial
        if "max_tokens" in self._original:
            body["max_tokens"] = max(1, int(self._original["max_tokens"]) - self.chunks)
        self._body = body
        self.resumed += 1

    def annotate(self, exc: InferlineError) -> InferlineError:
        """Attach what the caller already has to an error that is about to be raised."""
        exc.partial_text = self.text
        if isinstance(exc, BudgetExceeded) and exc.usage is None:
            exc.usage = self.usage
        return exc

    # --- results -------------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self._parts) if self._parts is not None else ""

    @property
    def usage(self) -> Usage | None:
        attempt = self._attempt_usage
        if self._usage_before is None:
            return attempt
        if attempt is None:
            return None
        return self._usage_before + attempt

    @property
    def ttft_s(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_start

    @property
    def tokens_per_s(self) -> float | None:
        """Decode rate after the first token: (tokens - 1) / (last - first chunk time)."""
        if self.t_first is None or self.t_last is None or self.t_last <= self.t_first:
            return None
        usage = self.usage
        tokens = usage.completion_tokens if usage is not None else self.chunks
        return (tokens - 1) / (self.t_last - self.t_first) if tokens > 1 else None

    def completion(self) -> Completion:
        return Completion(
            text=self.text,
            usage=self.usage,
            finish_reason=self.finish_reason,
            backend=self.backend,
            model=self.model,
            ttft_s=self.ttft_s,
            tokens_per_s=self.tokens_per_s,
            attempts=self.attempts,
        )


def _retryable_before_first_token(exc: InferlineError, statuses: frozenset[int]) -> bool:
    if isinstance(exc, APIStatusError):
        return exc.status in statuses
    if isinstance(exc, StreamError):
        return exc.transient
    return isinstance(exc, (APIConnectionError, ConnectTimeout, FirstTokenTimeout, IdleTimeout))


def _resumable(exc: InferlineError) -> bool:
    """After text was yielded: the stream broke or stalled, or a retryable status met the continuation."""
    if isinstance(exc, StreamError):
        return exc.transient
    if isinstance(exc, APIStatusError):
        return exc.retryable
    return isinstance(exc, (IdleTimeout, FirstTokenTimeout, ConnectTimeout, APIConnectionError))


class StreamView:
    """The read-only results both Stream and AsyncStream expose, available during and after iteration."""

    __slots__ = ("_call",)

    _call: _Call

    @property
    def text(self) -> str:
        """Everything yielded so far ("" with keep_text=False)."""
        return self._call.text

    @property
    def usage(self) -> Usage | None:
        """The server's token counts; None until the final usage chunk arrives."""
        return self._call.usage

    @property
    def finish_reason(self) -> str | None:
        return self._call.finish_reason

    @property
    def backend(self) -> str | None:
        """The serving backend (x-inferline-backend header); None when the server does not say."""
        return self._call.backend

    @property
    def model(self) -> str | None:
        """The serving model (x-inferline-model header); None when the server does not say."""
        return self._call.model

    @property
    def ttft_s(self) -> float | None:
        """Seconds from the call (not the attempt) starting to the first text delta."""
        return self._call.ttft_s

    @property
    def tokens_per_s(self) -> float | None:
        return self._call.tokens_per_s

    @property
    def chunks(self) -> int:
        """Text deltas yielded so far."""
        return self._call.chunks

    @property
    def attempts(self) -> int:
        """HTTP requests made (1 unless retried or resumed)."""
        return self._call.attempts

    @property
    def resumed(self) -> int:
        """How many times the stream continued after a mid-stream failure (resume=True)."""
        return self._call.resumed
