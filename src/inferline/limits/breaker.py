"""StoreBreaker: a circuit breaker around one shared store (Redis), so an outage costs a request nothing.

    closed     ──(failure_threshold consecutive failures)──▶ open
    open       ──(cooldown_s elapsed; the next call is the one trial)──▶ half-open
    half-open  ──(the trial succeeds)──▶ closed         (the trial fails)──▶ open (a new cool-down)

Without it, every request waits up to the store's timeout while Redis hangs. With it, after
`failure_threshold` consecutive failures or timeouts the store is skipped at once for `cooldown_s`
(limits: 503 or unmetered, per `on_store_error`; cache: a miss), then a single request tries it again.
Every transition is logged once; the state is read by the /metrics collector (limits/store_metrics.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from enum import IntEnum

__all__ = ["BreakerOpen", "CircuitState", "StoreBreaker"]

log = logging.getLogger("inferline.limits")


class CircuitState(IntEnum):
    """The value of inferline_limit_store_circuit_state (the same scale as the backends' breaker)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class BreakerOpen(Exception):
    """The store is being skipped (open, or half-open with its one trial already running)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreBreaker:
    """Counts consecutive failures of one store and decides whether the next call may try it.

    Call `acquire()` before the store call (raises BreakerOpen to skip it), then exactly one of
    `success()`, `failure(exc)` or `abandon()` (the call was cancelled: no verdict on the store).
    Not thread-safe; everything runs on the gateway's event loop, and no method awaits."""

    def __init__(
        self,
        store: str,
        where: str,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.store = store  # the metric label: "limits" | "cache"
        self._where = where  # redacted host:port/db, for the log lines
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._open_until = 0.0
        self._trial_running = False
        self._down_since: float | None = None  # first failure of the current outage
        self.errors_total = 0  # failed or timed-out calls (skipped calls are not errors)
        self.skipped_total = 0  # calls answered without touching the store
        self.transitions: list[tuple[float, CircuitState]] = []  # (clock, new state), for tests and benches

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def up(self) -> bool:
        """False from the first failure of an outage until a call succeeds again."""
        return self._state is CircuitState.CLOSED and self._consecutive == 0

    def acquire(self) -> None:
        """Let this call try the store, or raise BreakerOpen. Moves open -> half-open after the cool-down."""
        if self._state is CircuitState.CLOSED:
            return
        now = self._clock()
        if self._state is CircuitState.OPEN:
            if now < self._open_until:
                self.skipped_total += 1
                raise BreakerOpen(self._skip_message(), self._open_until - now)
            self._move(CircuitState.HALF_OPEN, "cool-down over: the next call tries the store")
        if self._trial_running:  # half-open: one trial at a time; the others keep skipping
            self.skipped_total += 1
            raise BreakerOpen(self._skip_message(), min(1.0, self._cooldown_s))
        self._trial_running = True

    def success(self) -> bool:
        """Record a call that worked; True when it closed the circuit (the store is back)."""
        self._trial_running = False
        self._consecutive = 0
        self._down_since, down_since = None, self._down_since
        if self._state is CircuitState.CLOSED:
            return False
        down = "" if down_since is None else f" (down for {self._clock() - down_since:.1f} s)"
        self._move(CircuitState.CLOSED, f"the store answers again{down}")
        return True

    def failure(self, exc: BaseException) -> bool:
        """Record a failed or timed-out call; True when it opened the circuit."""
        self._trial_running = False
        self.errors_total += 1
        self._consecutive += 1
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._state is CircuitState.HALF_OPEN:
            self._open_until = now + self._cooldown_s
            self._move(CircuitState.OPEN, f"the trial failed ({reason}); skipping it for {self._cooldown_s:g} s")
        elif self._state is CircuitState.CLOSED and self._consecutive >= self._threshold:
            self._open_until = now + self._cooldown_s
            self._move(
                CircuitState.OPEN,
                f"{self._consecutive} consecutive failures (last: {reason}); skipping it for {self._cooldown_s:g} s",
            )
            return True
        return False

    def abandon(self) -> None:
        """The call ended without a verdict (cancelled): free the half-open trial for the next caller."""
        self._trial_running = False

    def retry_after_s(self) -> float:
        """Seconds until the store will be tried again (what a 503's Retry-After should say), at least 1."""
        if self._state is CircuitState.OPEN:
            return max(1.0, math.ceil(self._open_until - self._clock()))
        return 1.0

    def _skip_message(self) -> str:
        return (
            f"{self.store} store at {self._where} is being skipped after {self._consecutive} consecutive "
            f"failures (circuit {self._state.name.lower().replace('_', '-')})"
        )

    def _move(self, state: CircuitState, why: str) -> None:
        old, self._state = self._state, state
        self.transitions.append((self._clock(), state))
        level = logging.INFO if state is CircuitState.CLOSED or state is CircuitState.HALF_OPEN else logging.WARNING
        log.log(
            level,
            "%s store at %s: circuit %s -> %s: %s",
            self.store,
            self._where,
            old.name.lower().replace("_", "-"),
            state.name.lower().replace("_", "-"),
            why,
        )

    def __repr__(self) -> str:
        return f"StoreBreaker({self.store}, {self._state.name.lower()}, failures={self._consecutive})"
