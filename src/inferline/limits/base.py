"""The LimitStore contract: reserve before dispatch, reconcile when the request ends; what each returns.

    reserve(key, limits, tokens)  ->  Reservation   (admitted; carries the x-ratelimit-* header values)
                                  ->  Denial        (reason from DenialReason, message, retry_after_s)
                                  !!  LimitStoreUnavailable  (the store could not answer in time)
    reconcile(reservation, actual_tokens)   refund unused tokens, free the concurrency slot; idempotent

Windows (identical in every store; docs/limits.md has the reasoning):
    requests_per_minute, tokens_per_minute   sliding log over the last 60 s (exact in every rolling window)
    max_concurrent                           leases that expire after concurrency_lease_s if never reconciled
    tokens_per_day, tokens_per_month         UTC calendar day / month counters (budgets reset at midnight UTC)
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from inferline.errors import InvalidRequest, Outcome, RateLimited

from .config import KeyLimits

__all__ = [
    "WINDOW_MS",
    "Denial",
    "DenialReason",
    "LimitDenied",
    "LimitName",
    "LimitStore",
    "LimitStoreUnavailable",
    "Quota",
    "RequestTooLarge",
    "Reservation",
    "denial_for",
    "oversized_request",
]

WINDOW_MS = 60_000  # the per-minute limits' sliding window
DAY_MS = 86_400_000
CONCURRENCY_RETRY_S = 1.0  # when a slot frees is unknowable; a short, honest guess


class LimitStoreUnavailable(Exception):
    """The limit store did not answer (refused, timed out, errored, or skipped by its open circuit breaker).
    The gateway applies on_store_error.

    Not a GatewayError on purpose: whether it becomes a 503 or an unmetered admission is policy (Limiter).
    `retry_after_s`: when the store will be tried again (the breaker's cool-down), None when unknown."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DenialReason(StrEnum):
    """Why a request was not admitted: the value goes in the error code, the metric label and the log."""

    RATE_LIMITED = "rate_limited"  # requests_per_minute or tokens_per_minute: retry soon (429)
    BUDGET_EXHAUSTED = "budget_exhausted"  # tokens_per_day or tokens_per_month: retry after the reset (429)
    CONCURRENCY_LIMITED = "concurrency_limited"  # max_concurrent: retry when one finishes (429)
    # The request alone exceeds a limit (or max_tokens_per_request): no retry can succeed (400).
    REQUEST_TOO_LARGE = "request_too_large"


class LimitName(StrEnum):
    """The KeyLimits field a denial is about. Order = wire code in the Lua scripts (1-based)."""

    REQUESTS_PER_MINUTE = "requests_per_minute"
    TOKENS_PER_MINUTE = "tokens_per_minute"
    MAX_CONCURRENT = "max_concurrent"
    TOKENS_PER_DAY = "tokens_per_day"
    TOKENS_PER_MONTH = "tokens_per_month"
    MAX_TOKENS_PER_REQUEST = "max_tokens_per_request"


LIMIT_CODES: tuple[LimitName, ...] = tuple(LimitName)

_REASONS = {
    LimitName.REQUESTS_PER_MINUTE: DenialReason.RATE_LIMITED,
    LimitName.TOKENS_PER_MINUTE: DenialReason.RATE_LIMITED,
    LimitName.MAX_CONCURRENT: DenialReason.CONCURRENCY_LIMITED,
    LimitName.TOKENS_PER_DAY: DenialReason.BUDGET_EXHAUSTED,
    LimitName.TOKENS_PER_MONTH: DenialReason.BUDGET_EXHAUSTED,
    LimitName.MAX_TOKENS_PER_REQUEST: DenialReason.REQUEST_TOO_LARGE,
}


def _go_duration(seconds: float) -> bytes:
    """OpenAI's reset format: 20ms, 1s, 1.5s, 6m0s, 1h2m3s."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms".encode()
    if seconds < 60:
        return f"{round(seconds, 3):g}s".encode()
    whole = math.ceil(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h{m}m{s}s" if h else f"{m}m{s}s").encode()


@dataclass(frozen=True, slots=True)
class Quota:
    """Values of OpenAI's x-ratelimit-* headers after this decision; None = that limit is not set."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None  # until the rolling window holds no request of this key
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    @classmethod
    def of(cls, limits: KeyLimits, requests_in_window: int, tokens_in_window: int, reset_s: float) -> Quota:
        """The header values given what the minute window holds (after the decision) and its reset time."""
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        if rpm is None and tpm is None:
            return _NO_QUOTA
        return cls(
            rpm,
            None if rpm is None else rpm - requests_in_window,
            None if rpm is None else reset_s,
            tpm,
            None if tpm is None else tpm - tokens_in_window,
            None if tpm is None else reset_s,
        )

    def headers(self) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        if self.limit_requests is not None:
            out.append((b"x-ratelimit-limit-requests", b"%d" % self.limit_requests))
            out.append((b"x-ratelimit-remaining-requests", b"%d" % max(0, self.remaining_requests or 0)))
            out.append((b"x-ratelimit-reset-requests", _go_duration(self.reset_requests_s or 0.0)))
        if self.limit_tokens is not None:
            out.append((b"x-ratelimit-limit-tokens", b"%d" % self.limit_tokens))
            out.append((b"x-ratelimit-remaining-tokens", b"%d" % max(0, self.remaining_tokens or 0)))
            out.append((b"x-ratelimit-reset-tokens", _go_duration(self.reset_tokens_s or 0.0)))
        return out


_NO_QUOTA = Quota()


@dataclass(frozen=True, slots=True)
class Reservation:
    """An admitted request's claim on its key's limits; hand it back to `reconcile` exactly once."""

    id: str
    key_name: str
    tokens: int  # reserved: prompt estimate + max_tokens
    quota: Quota = _NO_QUOTA
    day: int = -1  # UTC day number the tokens were charged to (-1: no daily budget)
    month: int = -1  # yyyymm the tokens were charged to (-1: no monthly budget)
    recorded: bool = True  # False: nothing was stored (no limits, or admitted unmetered under fail_open)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.quota.headers()

    @classmethod
    def unrecorded(cls, key_name: str, tokens: int) -> Reservation:
        return cls(id="", key_name=key_name, tokens=tokens, recorded=False)


@dataclass(frozen=True, slots=True)
class Denial:
    """A request that was not admitted: why, a message naming the limit and values, and when to retry."""

    key_name: str
    reason: DenialReason
    limit_name: LimitName
    limit: int
    used: int
    requested: int
    retry_after_s: float | None  # None: retrying cannot help (REQUEST_TOO_LARGE)
    message: str
    quota: Quota = _NO_QUOTA

    @property
    def status(self) -> int:
        return 400 if self.reason is DenialReason.REQUEST_TOO_LARGE else 429

    def headers(self) -> list[tuple[bytes, bytes]]:
        """x-ratelimit-* plus retry-after-ms (read by the openai SDKs); Retry-After comes from error()."""
        out = self.quota.headers()
        if self.retry_after_s is not None:
            out.append((b"retry-after-ms", b"%d" % math.ceil(self.retry_after_s * 1000)))
        return out

    def error(self) -> LimitDenied | RequestTooLarge:
        """The client-facing error: 429 LimitDenied (code = reason), or 400 for a request that can never fit."""
        if self.reason is DenialReason.REQUEST_TOO_LARGE:
            return RequestTooLarge(self)
        return LimitDenied(self)


class LimitDenied(RateLimited):
    """429: a rate limit, budget or concurrency limit of the key. Send `headers` with the error response."""

    def __init__(self, denial: Denial) -> None:
        # The reason is the outcome too (rate_limited, budget_exhausted, concurrency_limited): one vocabulary.
        super().__init__(
            denial.message,
            code=denial.reason.value,
            retry_after_s=denial.retry_after_s,
            outcome=Outcome(denial.reason.value),
        )
        self.denial = denial
        self.headers = denial.headers()


class RequestTooLarge(InvalidRequest):
    """400: this request alone exceeds one of the key's limits; no retry can succeed."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.message, param="max_tokens", code=denial.reason.value)
        self.denial = denial
        self.headers = denial.headers()


@runtime_checkable
class LimitStore(Protocol):
    """Shared limit state. Implementations: MemoryLimitStore (one process), RedisLimitStore (all replicas)."""

    async def reserve(
        self, key_name: str, limits: KeyLimits, tokens: int, now: float | None = None
    ) -> Reservation | Denial:
        """Atomically, all or nothing: concurrency +1, requests +1 and tokens += `tokens` in every window
        with a limit; or a Denial naming the limit that would be exceeded. `now` (unix seconds) is for tests:
        left None, the store's clock decides (Redis: the server's TIME, shared by every replica)."""
        ...

    async def reconcile(self, reservation: Reservation, actual_tokens: int | None) -> bool:
        """Charge `actual_tokens` instead of the reserved amount in every window charged (None: keep the
        reservation) and free the concurrency slot. Idempotent: False when already reconciled or expired."""
        ...

    async def check(self) -> None:
        """Raise LimitStoreUnavailable when the store cannot be reached (for readiness probes)."""
        ...

    async def aclose(self) -> None: ...


# --- shared decision helpers (the Lua scripts implement the same rules) ---------------------------------


def _human_wait(seconds: float) -> str:
    if seconds < 120:
        return f"{max(1, math.ceil(seconds))} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    h, m = divmod(minutes, 60)
    return f"{h} h {m} min" if m else f"{h} h"


def denial_for(
    key_name: str,
    limit_name: LimitName,
    limit: int,
    used: int,
    requested: int,
    retry_after_s: float | None,
    quota: Quota = _NO_QUOTA,
) -> Denial:
    """Build a Denial and its message. retry_after_s None means the request alone exceeds the limit."""
    key = f"key {key_name!r}"
    if retry_after_s is None:
        reason = DenialReason.REQUEST_TOO_LARGE
        message = (
            f"this request needs {requested} tokens, more than the {limit_name.value} limit {limit} for {key}; "
            "lower max_tokens or shorten the prompt"
        )
    else:
        reason = _REASONS[limit_name]
        wait = _human_wait(retry_after_s)
        if limit_name is LimitName.MAX_CONCURRENT:
            message = f"max_concurrent limit {limit} for {key} reached: {used} in flight; retry in {wait}"
        elif limit_name is LimitName.REQUESTS_PER_MINUTE:
            message = f"requests_per_minute limit {limit} for {key} reached: {used} used; retry in {wait}"
        else:
            message = (
                f"{limit_name.value} limit {limit} for {key} reached: {used} used, "
                f"this request needs {requested}; retry in {wait}"
            )
    return Denial(key_name, reason, limit_name, limit, used, requested, retry_after_s, message, quota)


def oversized_request(key_name: str, limits: KeyLimits, tokens: int) -> Denial | None:
    """The check that needs no shared state: max_tokens_per_request. Stores call it before anything else."""
    cap = limits.max_tokens_per_request
    if cap is not None and tokens > cap:
        return denial_for(key_name, LimitName.MAX_TOKENS_PER_REQUEST, cap, 0, tokens, None)
    return None


def utc_day(now_ms: int) -> int:
    return now_ms // DAY_MS


def utc_month(day: int) -> tuple[int, int]:
    """(yyyymm, start of the next month in unix ms) of a UTC day number."""
    d = _dt.date(1970, 1, 1) + _dt.timedelta(days=day)
    nxt = _dt.date(d.year + 1, 1, 1) if d.month == 12 else _dt.date(d.year, d.month + 1, 1)
    return d.year * 100 + d.month, (nxt - _dt.date(1970, 1, 1)).days * DAY_MS
