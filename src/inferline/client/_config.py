"""Small typed config objects for the client: Timeouts, Retry and Budget, with their defaults built once."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

__all__ = ["DEFAULT_RETRY", "DEFAULT_TIMEOUTS", "Budget", "Retry", "Timeouts"]


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"`{name}` must be > 0 or None; got {value!r}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines for one call, in seconds; None disables one.

    connect_s      to open the TCP connection.
    first_token_s  from sending the request to the first text delta (per attempt: queueing and prefill).
    idle_s         the longest wait for bytes between chunks once the stream has started. Only time spent
                   waiting on the socket counts: a slow consumer never trips it.
    total_s        the whole call, retries and backoff included, and the time the consumer takes.
    """

    connect_s: float | None = 5.0
    first_token_s: float | None = 60.0
    idle_s: float | None = 30.0
    total_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect_s", "first_token_s", "idle_s", "total_s"):
            _check_positive(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class Retry:
    """When and how long to wait before trying again. Attempts include the first try.

    Failures before the first token are retried: connection errors, timeouts, `retry_statuses` and
    transient SSE error events. Waits use full-jitter exponential backoff,
    uniform(0, min(backoff_max_s, backoff_base_s * 2**(retry - 1))), except that a 429 or 503 carrying
    Retry-After (seconds or an HTTP date) waits exactly that long; one asking for more than
    `max_retry_after_s` is not retried. Resumes (resume=True) draw on the same attempts.
    """

    max_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 60.0
    retry_statuses: frozenset[int] = field(default=frozenset({408, 429, 500, 502, 503, 504}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"`max_attempts` must be >= 1; got {self.max_attempts}")
        for name in ("backoff_base_s", "backoff_max_s", "max_retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0; got {getattr(self, name)}")

    def backoff_s(self, retry: int) -> float:
        """Full-jitter wait before retry number `retry` (1 for the first retry)."""
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** (retry - 1)))
        return random.uniform(0.0, cap)


class Budget:
    """A token allowance shared by many calls (a session, a job, a tenant); safe across threads and tasks.

    Streams charge one token per text chunk as it arrives and reconcile with the server's `usage` when
    it comes, so `used_tokens` is exact whenever usage arrived and a chunk count otherwise. It counts
    generated (completion) tokens: the ones a client can stop. Each request also asks for at most
    `remaining_tokens`, so the server itself stops at the budget.
    """

    __slots__ = ("_lock", "_used", "total_tokens")

    def __init__(self, total_tokens: int) -> None:
        if total_tokens < 0:
            raise ValueError(f"`total_tokens` must be >= 0; got {total_tokens}")
        self.total_tokens = total_tokens
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_tokens(self) -> int:
        return self._used

    @property
    def remaining_tokens(self) -> int:
        return max(0, self.total_tokens - self._used)

    def _take(self, tokens: int) -> bool:
        """Charge `tokens` if they fit; False (and no charge) if they would overdraw the budget."""
        with self._lock:
            if self._used + tokens > self.total_tokens:
                return False
            self._used += tokens
            return True

    def _adjust(self, tokens: int) -> None:
        """Reconcile a chunk count with the server's usage (may overdraw: usage is authoritative)."""
        if tokens:
            with self._lock:
                self._used = max(0, self._used + tokens)

    def __repr__(self) -> str:
        return f"Budget(total_tokens={self.total_tokens}, used_tokens={self._used})"


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRY = Retry()
