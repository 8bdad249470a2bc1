"""The LimitStore contract, run against MemoryLimitStore and RedisLimitStore (a real redis-server) alike.

Time is passed explicitly (`now`), so windows, retry-after and calendar boundaries are exact.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from inferline.limits import Denial, DenialReason, KeyLimits, LimitName, LimitStore, Reservation


def at(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp()


T0 = at("2026-03-10T12:00:00")


async def admitted(store: LimitStore, key: str, limits: KeyLimits, tokens: int, now: float) -> Reservation:
    result = await store.reserve(key, limits, tokens, now=now)
    assert isinstance(result, Reservation), result
    return result


async def denied(store: LimitStore, key: str, limits: KeyLimits, tokens: int, now: float) -> Denial:
    result = await store.reserve(key, limits, tokens, now=now)
    assert isinstance(result, Denial), result
    return result


async def test_requests_per_minute_admits_exactly_n_then_frees_one_per_expired_request(store: LimitStore) -> None:
    limits = KeyLimits(requests_per_minute=5)
    for i in range(5):
        r = await admitted(store, "team-a", limits, 10, T0 + i)
        assert r.quota.remaining_requests == 4 - i
    d = await denied(store, "team-a", limits, 10, T0 + 10)
    assert d.reason is DenialReason.RATE_LIMITED
    assert d.limit_name is LimitName.REQUESTS_PER_MINUTE
    assert (d.limit, d.used) == (5, 5)
    assert d.retry_after_s == pytest.approx(50.0)  # the oldest (T0) leaves the window at T0 + 60
    assert d.message == "requests_per_minute limit 5 for key 'team-a' reached: 5 used; retry in 50 s"
    assert d.status == 429
    await denied(store, "team-a", limits, 10, T0 + 59.999)
    await admitted(store, "team-a", limits, 10, T0 + 60.001)  # one expired: one admitted
    await denied(store, "team-a", limits, 10, T0 + 60.5)


async def test_sliding_window_has_no_burst_across_a_minute_boundary(store: LimitStore) -> None:
    """A fixed window would allow 2N around a boundary; the sliding log allows N in any 60 s."""
    limits = KeyLimits(requests_per_minute=4)
    boundary = at("2026-03-10T12:01:00")
    for i in range(4):
        await admitted(store, "k", limits, 1, boundary - 1 + i * 0.1)
    d = await denied(store, "k", limits, 1, boundary + 1)
    assert d.retry_after_s == pytest.approx(58.0)
    await admitted(store, "k", limits, 1, boundary + 59.001)


async def test_tokens_per_minute_reserve_then_reconcile_refunds_unused(store: LimitStore) -> None:
    limits = KeyLimits(tokens_per_minute=10000)
    r1 = await admitted(store, "team-a", limits, 9800, T0)
    assert r1.quota.remaining_tokens == 200
    d = await denied(store, "team-a", limits, 400, T0 + 48)
    assert d.reason is DenialReason.RATE_LIMITED and d.limit_name is LimitName.TOKENS_PER_MINUTE
    assert d.message == (
        "tokens_per_minute limit 10000 for key 'team-a' reached: 9800 used, this request needs 400; retry in 12 s"
    )
    assert d.retry_after_s == pytest.approx(12.0)
    assert await store.reconcile(r1, 1200) is True  # used 1200 of 9800: 8600 back
    r2 = await admitted(store, "team-a", limits, 400, T0 + 49)
    assert r2.quota.remaining_tokens == 10000 - 1200 - 400


async def test_token_retry_after_waits_for_enough_old_reservations_to_leave(store: LimitStore) -> None:
    limits = KeyLimits(tokens_per_minute=1000)
    await admitted(store, "k", limits, 300, T0)
    await admitted(store, "k", limits, 300, T0 + 10)
    await admitted(store, "k", limits, 300, T0 + 20)
    d = await denied(store, "k", limits, 500, T0 + 30)  # needs 400 freed: the first two must leave
    assert d.retry_after_s == pytest.approx(40.0)  # T0 + 10 + 60 - (T0 + 30)


async def test_reconcile_is_idempotent(store: LimitStore) -> None:
    limits = KeyLimits(tokens_per_minute=1000, max_concurrent=1, tokens_per_day=5000)
    r = await admitted(store, "k", limits, 800, T0)
    assert await store.reconcile(r, 100) is True
    assert await store.reconcile(r, 100) is False
    assert await store.reconcile(r, 0) is False  # a second call never refunds again
    r2 = await admitted(store, "k", limits, 900, T0 + 1)  # 100 + 900 = 1000: exactly fits
    assert r2.quota.remaining_tokens == 0
    await denied(store, "k", limits, 1, T0 + 2)  # the slot is held by r2, freed once only


async def test_max_concurrent_counts_in_flight_and_frees_on_reconcile(store: LimitStore) -> None:
    limits = KeyLimits(max_concurrent=2)
    a = await admitted(store, "team-b", limits, 1, T0)
    await admitted(store, "team-b", limits, 1, T0)
    d = await denied(store, "team-b", limits, 1, T0)
    assert d.reason is DenialReason.CONCURRENCY_LIMITED and d.limit_name is LimitName.MAX_CONCURRENT
    assert d.message == "max_concurrent limit 2 for key 'team-b' reached: 2 in flight; retry in 1 s"
    assert d.retry_after_s == pytest.approx(1.0)
    await store.reconcile(a, 1)
    await admitted(store, "team-b", limits, 1, T0 + 0.1)


async def test_a_never_reconciled_reservation_frees_its_slot_when_the_lease_expires(store: LimitStore) -> None:
    limits = KeyLimits(max_concurrent=1)  # the fixture's stores lease slots for 120 s
    lost = await admitted(store, "k", limits, 1, T0)
    await denied(store, "k", limits, 1, T0 + 119)
    await admitted(store, "k", limits, 1, T0 + 120.5)
    assert await store.reconcile(lost, 0) is False  # expired: nothing to give back


async def test_daily_budget_is_exhausted_until_utc_midnight(store: LimitStore) -> None:
    limits = KeyLimits(tokens_per_day=1000)
    late = at("2026-03-10T23:59:00")
    r = await admitted(store, "team-c", limits, 700, late)
    assert r.day == int(late // 86400)
    d = await denied(store, "team-c", limits, 400, late + 30)
    assert d.reason is DenialReason.BUDGET_EXHAUSTED and d.limit_name is LimitName.TOKENS_PER_DAY
    assert d.retry_after_s == pytest.approx(30.0)
    assert d.message == (
        "tokens_per_day limit 1000 for key 'team-c' reached: 700 used, this request needs 400; retry in 30 s"
    )
    r2 = await admitted(store, "team-c", limits, 900, late + 61)  # a new UTC day
    # The late refund of yesterday's reservation goes to yesterday, not to today's budget.
    assert await store.reconcile(r, 0) is True
    await denied(store, "team-c", limits, 200, late + 62)
    await store.reconcile(r2, 50)
    await admitted(store, "team-c", limits, 950, late + 63)


async def test_daily_budget_retry_message_is_human_for_long_waits(store: LimitStore) -> None:
    limits = KeyLimits(tokens_per_day=100)
    await admitted(store, "k", limits, 100, at("2026-03-10T08:00:00"))
    d = await denied(store, "k", limits, 1, at("2026-03-10T08:30:00"))
    assert d.retry_after_s == pytest.approx(15.5 * 3600)
    assert d.message.endswith("retry in 15 h 30 min")


@pytest.mark.parametrize(
    ("last_moment", "next_month_start"),
    [
        ("2026-01-31T23:59:30", "2026-02-01T00:00:00"),
        ("2026-12-31T23:59:59", "2027-01-01T00:00:00"),
        ("2028-02-29T12:00:00", "2028-03-01T00:00:00"),  # leap year
        ("2100-02-28T00:00:00", "2100-03-01T00:00:00"),  # not a leap year
    ],
)
async def test_monthly_budget_resets_at_the_calendar_month(
    store: LimitStore, last_moment: str, next_month_start: str
) -> None:
    limits = KeyLimits(tokens_per_month=1000)
    now = at(last_moment)
    r = await admitted(store, "k", limits, 1000, now)
    assert r.month == int(last_moment[:4]) * 100 + int(last_moment[5:7])
    d = await denied(store, "k", limits, 1, now)
    assert d.reason is DenialReason.BUDGET_EXHAUSTED and d.limit_name is LimitName.TOKENS_PER_MONTH
    assert d.retry_after_s == pytest.approx(at(next_month_start) - now)
    await admitted(store, "k", limits, 1000, at(next_month_start))


async def test_a_request_larger_than_a_limit_is_too_large_not_retryable(store: LimitStore) -> None:
    d = await denied(store, "team-a", KeyLimits(tokens_per_minute=10000), 12000, T0)
    assert d.reason is DenialReason.REQUEST_TOO_LARGE and d.retry_after_s is None and d.status == 400
    assert d.message == (
        "this request needs 12000 tokens, more than the tokens_per_minute limit 10000 for key 'team-a'; "
        "lower max_tokens or shorten the prompt"
    )
    d = await denied(store, "team-a", KeyLimits(max_tokens_per_request=4096), 5000, T0)
    assert d.limit_name is LimitName.MAX_TOKENS_PER_REQUEST and d.reason is DenialReason.REQUEST_TOO_LARGE
    d = await denied(store, "team-a", KeyLimits(requests_per_minute=1, tokens_per_day=100), 101, T0)
    assert d.limit_name is LimitName.TOKENS_PER_DAY and d.retry_after_s is None


async def test_a_denial_charges_nothing(store: LimitStore) -> None:
    limits = KeyLimits(requests_per_minute=10, tokens_per_minute=1000, tokens_per_day=10000, max_concurrent=5)
    await admitted(store, "k", limits, 900, T0)
    for _ in range(3):
        await denied(store, "k", limits, 200, T0 + 1)  # tokens fail: requests, concurrency, day unchanged
    r = await admitted(store, "k", limits, 100, T0 + 2)
    assert r.quota.remaining_requests == 8 and r.quota.remaining_tokens == 0


async def test_the_reported_denial_is_the_one_that_frees_last(store: LimitStore) -> None:
    limits = KeyLimits(requests_per_minute=1, tokens_per_day=100)
    await admitted(store, "k", limits, 100, T0)
    d = await denied(store, "k", limits, 10, T0 + 1)  # both fail; the daily budget frees much later
    assert d.reason is DenialReason.BUDGET_EXHAUSTED


async def test_unknown_actual_tokens_keep_the_reservation_and_overage_is_charged(store: LimitStore) -> None:
    limits = KeyLimits(tokens_per_minute=1000)
    r = await admitted(store, "k", limits, 300, T0)
    await store.reconcile(r, None)  # usage unknown (stream cut): the reserved 300 stay charged
    r2 = await admitted(store, "k", limits, 300, T0 + 1)
    assert r2.quota.remaining_tokens == 400
    await store.reconcile(r2, 500)  # the prompt estimate was low: the extra 200 are charged too
    d = await denied(store, "k", limits, 300, T0 + 2)
    assert d.used == 800


async def test_a_key_without_limits_never_touches_the_store(store: LimitStore) -> None:
    r = await admitted(store, "free", KeyLimits(), 10**9, T0)
    assert r.recorded is False and r.headers() == []
    assert await store.reconcile(r, 5) is False


async def test_headers_follow_openai_names_and_formats(store: LimitStore) -> None:
    limits = KeyLimits(requests_per_minute=60, tokens_per_minute=150000)
    r = await admitted(store, "k", limits, 1000, T0)
    assert dict(r.headers()) == {
        b"x-ratelimit-limit-requests": b"60",
        b"x-ratelimit-remaining-requests": b"59",
        b"x-ratelimit-reset-requests": b"1m0s",
        b"x-ratelimit-limit-tokens": b"150000",
        b"x-ratelimit-remaining-tokens": b"149000",
        b"x-ratelimit-reset-tokens": b"1m0s",
    }
    d = await denied(store, "k", limits, 150000, T0 + 59.5)
    headers = dict(d.headers())
    assert headers[b"x-ratelimit-remaining-tokens"] == b"149000"
    assert headers[b"x-ratelimit-reset-tokens"] == b"500ms"
    assert headers[b"retry-after-ms"] == b"500"
    only_rpm = await admitted(store, "k2", KeyLimits(requests_per_minute=3), 1, T0)
    assert [name for name, _ in only_rpm.headers()] == [
        b"x-ratelimit-limit-requests",
        b"x-ratelimit-remaining-requests",
        b"x-ratelimit-reset-requests",
    ]


async def test_concurrent_reserves_in_one_process_admit_exactly_n(store: LimitStore) -> None:
    limits = KeyLimits(requests_per_minute=10, max_concurrent=50)
    results = await asyncio.gather(*(store.reserve("k", limits, 5, now=T0) for _ in range(60)))
    assert sum(isinstance(r, Reservation) for r in results) == 10


async def test_keys_are_independent(store: LimitStore) -> None:
    limits = KeyLimits(requests_per_minute=1)
    await admitted(store, "a", limits, 1, T0)
    await admitted(store, "b", limits, 1, T0)
    await denied(store, "a", limits, 1, T0)


async def test_without_now_the_store_clock_decides(store: LimitStore) -> None:
    limits = KeyLimits(requests_per_minute=2, tokens_per_day=10)
    r = await store.reserve("k", limits, 1)
    assert isinstance(r, Reservation)
    assert abs(r.day - dt.datetime.now(dt.UTC).timestamp() // 86400) <= 1
    await store.reserve("k", limits, 1)
    d = await store.reserve("k", limits, 1)
    assert isinstance(d, Denial) and 59 < (d.retry_after_s or 0) <= 60


async def test_long_logs_expire_and_retry_walks_across_batches(store: LimitStore) -> None:
    """More entries than the Lua scripts touch per slice (500): expiry and the retry walk still agree."""
    limits = KeyLimits(tokens_per_minute=600)
    for i in range(600):
        await admitted(store, "k", limits, 1, T0 + i * 0.01)
    d = await denied(store, "k", limits, 550, T0 + 10)  # 550 oldest must leave: the 550th left at t[549] + 60
    assert d.retry_after_s == pytest.approx(T0 + 5.49 + 60 - (T0 + 10), abs=0.002)
    r = await admitted(store, "k", limits, 600, T0 + 70)  # all 600 expire at once
    assert r.quota.remaining_tokens == 0
