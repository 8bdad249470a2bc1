"""MemoryLimitStore: limit state in this process. Exact for one gateway; N replicas each allow the full limit.

Every method runs without an `await` between reading and writing the state, so in asyncio the whole
check-and-reserve is one critical section (the same rules as lua/reserve.lua, which is atomic in Redis).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from .base import (
    CONCURRENCY_RETRY_S,
    WINDOW_MS,
    Denial,
    LimitName,
    Quota,
    Reservation,
    denial_for,
    oversized_request,
    utc_day,
    utc_month,
)
from .config import CONCURRENCY_LEASE_S, KeyLimits

__all__ = ["MemoryLimitStore"]


@dataclass(slots=True)
class _KeyState:
    log: deque[tuple[int, str]] = field(default_factory=deque)  # (admitted at ms, reservation id), oldest first
    amounts: dict[str, int] = field(default_factory=dict)  # id -> tokens charged in the minute window
    token_sum: int = 0
    # id -> lease expiry ms, in expiry order (the lease is constant); the "open" marker reconcile removes.
    leases: OrderedDict[str, int] = field(default_factory=OrderedDict)
    days: dict[int, int] = field(default_factory=dict)  # UTC day number -> tokens charged
    months: dict[int, int] = field(default_factory=dict)  # yyyymm -> tokens charged


# Subclassed by tests (a store that fails on demand), which are not compiled.
@mypyc_attr(allow_interpreted_subclasses=True)
class MemoryLimitStore:
    """One process's limit state: sliding 60 s logs, concurrency leases, UTC day and month counters."""

    def __init__(self, concurrency_lease_s: float = CONCURRENCY_LEASE_S) -> None:
        self._lease_ms = int(concurrency_lease_s * 1000)
        self._keys: dict[str, _KeyState] = {}
        self._ids = itertools.count(1)

    async def reserve(
        self, key_name: str, limits: KeyLimits, tokens: int, now: float | None = None
    ) -> Reservation | Denial:
        return self.reserve_nowait(key_name, limits, tokens, now)

    def reserve_nowait(
        self, key_name: str, limits: KeyLimits, tokens: int, now: float | None = None
    ) -> Reservation | Denial:
        """The synchronous body of `reserve` (no awaits: atomic under asyncio)."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0; got {tokens}")
        too_big = oversized_request(key_name, limits, tokens)
        if too_big is not None:
            return too_big
        if limits.unlimited:
            return Reservation.unrecorded(key_name, tokens)
        now_ms = math.floor((time.time() if now is None else now) * 1000)
        st = self._keys.get(key_name)
        if st is None:
            st = self._keys[key_name] = _KeyState()

        rpm, tpm, cc = limits.requests_per_minute, limits.tokens_per_minute, limits.max_concurrent
        dl, ml = limits.tokens_per_day, limits.tokens_per_month
        use_log = rpm is not None or tpm is not None

        # Expire what left the windows.
        cutoff = now_ms - WINDOW_MS
        log = st.log
        while log and log[0][0] <= cutoff:
            _, old = log.popleft()
            st.token_sum -= st.amounts.pop(old, 0)
        leases = st.leases
        while leases:
            rid, expiry = next(iter(leases.items()))
            if expiry > now_ms:
                break
            del leases[rid]

        day = utc_day(now_ms)
        month, next_month_ms = utc_month(day) if ml is not None else (-1, 0)
        count = len(log)

        # Every failing limit: (name, limit, used, retry ms or -1 when the request alone is too large).
        fails: list[tuple[LimitName, int, int, int]] = []
        if rpm is not None and count + 1 > rpm:
            fails.append((LimitName.REQUESTS_PER_MINUTE, rpm, count, log[count - rpm][0] + WINDOW_MS - now_ms))
        if tpm is not None:
            if tokens > tpm:
                fails.append((LimitName.TOKENS_PER_MINUTE, tpm, st.token_sum, -1))
            elif st.token_sum + tokens > tpm:
                excess, freed, at = st.token_sum + tokens - tpm, 0, now_ms
                for ts, rid in log:
                    freed += st.amounts.get(rid, 0)
                    if freed >= excess:
                        at = ts
                        break
                fails.append((LimitName.TOKENS_PER_MINUTE, tpm, st.token_sum, at + WINDOW_MS - now_ms))
        if cc is not None and len(st.leases) + 1 > cc:
            fails.append((LimitName.MAX_CONCURRENT, cc, len(st.leases), int(CONCURRENCY_RETRY_S * 1000)))
        if dl is not None:
            used_d = st.days.get(day, 0)
            if tokens > dl:
                fails.append((LimitName.TOKENS_PER_DAY, dl, used_d, -1))
            elif used_d + tokens > dl:
                fails.append((LimitName.TOKENS_PER_DAY, dl, used_d, (day + 1) * 86_400_000 - now_ms))
        if ml is not None:
            used_m = st.months.get(month, 0)
            if tokens > ml:
                fails.append((LimitName.TOKENS_PER_MONTH, ml, used_m, -1))
            elif used_m + tokens > ml:
                fails.append((LimitName.TOKENS_PER_MONTH, ml, used_m, next_month_ms - now_ms))

        reset_s = (log[-1][0] + WINDOW_MS - now_ms) / 1000 if log else 0.0
        if fails:
            quota = Quota.of(limits, count, st.token_sum, reset_s)
            name, limit, used, retry_ms = _worst(fails)
            return denial_for(key_name, name, limit, used, tokens, None if retry_ms < 0 else retry_ms / 1000, quota)

        rid = f"m{next(self._ids)}"
        if use_log:
            log.append((now_ms, rid))
            if tpm is not None:
                st.amounts[rid] = tokens
                st.token_sum += tokens
        st.leases[rid] = now_ms + self._lease_ms
        if dl is not None:
            if day not in st.days:
                for old_day in [d for d in st.days if d < day - 1]:
                    del st.days[old_day]
            st.days[day] = st.days.get(day, 0) + tokens
        if ml is not None:
            if month not in st.months:
                prev = month - 89 if month % 100 == 1 else month - 1  # keep last month for late refunds
                for old_month in [m for m in st.months if m < prev]:
                    del st.months[old_month]
            st.months[month] = st.months.get(month, 0) + tokens
        quota = Quota.of(limits, count + 1, st.token_sum, WINDOW_MS / 1000)
        return Reservation(rid, key_name, tokens, quota, day if dl is not None else -1, month if ml is not None else -1)

    async def reconcile(self, reservation: Reservation, actual_tokens: int | None) -> bool:
        return self.reconcile_nowait(reservation, actual_tokens)

    def reconcile_nowait(self, reservation: Reservation, actual_tokens: int | None) -> bool:
        if not reservation.recorded:
            return False
        st = self._keys.get(reservation.key_name)
        if st is None or st.leases.pop(reservation.id, None) is None:
            return False  # already reconciled, or its lease expired
        if actual_tokens is not None:
            if actual_tokens < 0:
                raise ValueError(f"actual_tokens must be >= 0; got {actual_tokens}")
            delta = actual_tokens - reservation.tokens
            if delta:
                if reservation.id in st.amounts:  # still inside the minute window
                    st.amounts[reservation.id] += delta
                    st.token_sum += delta
                if reservation.day in st.days:
                    st.days[reservation.day] += delta
                if reservation.month in st.months:
                    st.months[reservation.month] += delta
        return True

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _worst(fails: list[tuple[LimitName, int, int, int]]) -> tuple[LimitName, int, int, int]:
    """The denial to report: one no retry can fix first, else the one that frees last (first on ties)."""
    for f in fails:
        if f[3] < 0:
            return f
    best = fails[0]
    for f in fails[1:]:
        if f[3] > best[3]:
            best = f
    return best
