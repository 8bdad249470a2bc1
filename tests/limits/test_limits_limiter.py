"""Limiter (authenticate / admit / release) and KeyRing: what the gateway sees, errors included."""

from __future__ import annotations

import asyncio
import logging

import pytest

from inferline.errors import BackendUnavailable, InvalidRequest, RateLimited, Unauthorized, error_headers
from inferline.limits import (
    ANONYMOUS,
    ApiKeyConfig,
    Denial,
    DenialReason,
    KeyLimits,
    KeyRing,
    KeyRingError,
    LimitDenied,
    Limiter,
    LimitsConfig,
    LimitStoreUnavailable,
    MemoryLimitStore,
    RequestTooLarge,
    Reservation,
    bearer_token,
    hash_api_key,
)

KEY_A = "sk-team-a-0123456789"
KEY_B = "sk-team-b-9876543210"


def config(**overrides: object) -> LimitsConfig:
    base: dict[str, object] = {
        "keys": [
            {"name": "team-a", "sha256": hash_api_key(KEY_A), "limits": {"requests_per_minute": 2}},
            {"name": "team-b", "key_env": "TEAM_B_KEY", "limits": {"max_tokens_per_request": 100}},
        ]
    }
    return LimitsConfig.model_validate(base | overrides)


class DownStore(MemoryLimitStore):
    """A store whose every call fails like an unreachable Redis."""

    async def reserve(
        self, key_name: str, limits: KeyLimits, tokens: int, now: float | None = None
    ) -> Reservation | Denial:
        raise LimitStoreUnavailable("redis limit store at 127.0.0.1:1/0: ConnectionError")

    async def reconcile(self, reservation: Reservation, actual_tokens: int | None) -> bool:
        raise LimitStoreUnavailable("redis limit store at 127.0.0.1:1/0: ConnectionError")


def limiter(cfg: LimitsConfig | None = None, store: MemoryLimitStore | None = None) -> Limiter:
    cfg = cfg or config()
    return Limiter(cfg, store or MemoryLimitStore(), KeyRing(cfg.keys, {"TEAM_B_KEY": KEY_B}))


def test_bearer_token_parsing() -> None:
    assert bearer_token(b"Bearer abc") == b"abc"
    assert bearer_token("bearer  abc ") == b"abc"
    assert bearer_token(b"Basic abc") is None
    assert bearer_token(b"Bearer ") is None
    assert bearer_token(None) is None


def test_keyring_finds_keys_by_digest_or_env_and_never_shows_them() -> None:
    ring = KeyRing(config().keys, {"TEAM_B_KEY": KEY_B})
    a, b = ring.lookup(KEY_A), ring.lookup(KEY_B.encode())
    assert a is not None and a.name == "team-a"
    assert b is not None and b.name == "team-b"
    assert ring.lookup("sk-wrong") is None
    assert ring.lookup(KEY_A[:-1]) is None
    for text in (repr(ring), repr(config()), repr(a)):
        assert KEY_A not in text and KEY_B not in text and hash_api_key(KEY_A) not in text
    assert repr(ring) == "KeyRing(2 keys: team-a, team-b)"


def test_keyring_fails_at_start_up_when_a_key_env_is_missing() -> None:
    with pytest.raises(KeyRingError, match="key 'team-b': environment variable TEAM_B_KEY is unset or empty"):
        KeyRing(config().keys, {})


def test_authenticate_maps_headers_to_principals() -> None:
    lim = limiter()
    assert lim.authenticate(b"Bearer " + KEY_A.encode()).name == "team-a"
    with pytest.raises(Unauthorized, match="invalid API key") as info:
        lim.authenticate(b"Bearer sk-nope")
    assert "sk-nope" not in info.value.message
    with pytest.raises(Unauthorized, match="missing API key"):
        lim.authenticate(None)
    open_lim = limiter(config(require_api_key=False, anonymous_limits={"requests_per_minute": 1}))
    anon = open_lim.authenticate(None)
    assert anon.name == ANONYMOUS and anon.limits.requests_per_minute == 1
    with pytest.raises(Unauthorized):  # a wrong key is still wrong when keys are optional
        open_lim.authenticate(b"Bearer sk-nope")


async def test_admit_raises_429_with_headers_and_retry_after() -> None:
    lim = limiter()
    principal = lim.authenticate(b"Bearer " + KEY_A.encode())
    r = await lim.admit(principal, 10)
    assert dict(r.headers())[b"x-ratelimit-remaining-requests"] == b"1"
    await lim.admit(principal, 10)
    with pytest.raises(LimitDenied) as info:
        await lim.admit(principal, 10)
    exc = info.value
    assert isinstance(exc, RateLimited) and exc.status == 429 and exc.code == "rate_limited"
    assert exc.denial.reason is DenialReason.RATE_LIMITED
    assert exc.retry_after_s is not None and 59 < exc.retry_after_s <= 60
    assert (b"retry-after", b"60") in error_headers(exc)
    assert dict(exc.headers)[b"x-ratelimit-remaining-requests"] == b"0"


async def test_admit_rejects_a_request_over_max_tokens_per_request_with_400() -> None:
    lim = limiter()
    principal = lim.authenticate(b"Bearer " + KEY_B.encode())
    with pytest.raises(RequestTooLarge) as info:
        await lim.admit(principal, 101)
    assert isinstance(info.value, InvalidRequest) and info.value.status == 400
    assert info.value.code == "request_too_large" and info.value.param == "max_tokens"
    assert "max_tokens_per_request limit 100 for key 'team-b'" in info.value.message


async def test_store_down_fail_closed_is_a_503_with_retry_after() -> None:
    lim = limiter(store=DownStore())
    principal = lim.authenticate(b"Bearer " + KEY_A.encode())
    with pytest.raises(BackendUnavailable) as info:
        await lim.admit(principal, 10)
    assert info.value.status == 503 and info.value.code == "store_unavailable"
    assert info.value.retry_after_s == 1.0
    assert lim.store_errors_total == 1


async def test_store_down_fail_open_admits_unmetered(caplog: pytest.LogCaptureFixture) -> None:
    lim = limiter(config(on_store_error="fail_open"), store=DownStore())
    principal = lim.authenticate(b"Bearer " + KEY_A.encode())
    with caplog.at_level(logging.WARNING, logger="inferline.limits"):
        r = await lim.admit(principal, 10)
        await lim.admit(principal, 10)
    assert r.recorded is False and r.headers() == []
    assert lim.unmetered_total == 2
    assert len([m for m in caplog.messages if "admitting unmetered" in m]) == 1  # not one line per request
    await lim.release(r, 5)  # nothing recorded, nothing to do


async def test_release_never_raises_and_release_soon_is_drained_by_aclose() -> None:
    lim = limiter(store=DownStore())
    await lim.release(Reservation("r1", "team-a", 10), 5)
    assert lim.store_errors_total == 1

    store = MemoryLimitStore()
    lim = limiter(store=store)
    principal = lim.authenticate(b"Bearer " + KEY_A.encode())
    r = await lim.admit(principal, 10)
    lim.release_soon(r, 3)
    await lim.aclose()
    assert await store.reconcile(r, 3) is False  # already reconciled by the background task


async def test_release_completes_even_when_the_request_task_is_cancelled() -> None:
    store = MemoryLimitStore()
    lim = limiter(config(keys=[{"name": "k", "sha256": hash_api_key(KEY_A), "limits": {"max_concurrent": 1}}]), store)
    principal = lim.authenticate(b"Bearer " + KEY_A.encode())
    started = asyncio.Event()

    async def request() -> None:
        r = await lim.admit(principal, 10)
        try:
            started.set()
            await asyncio.sleep(10)  # the engine call; the client disconnects
        finally:
            await lim.release(r, None)

    task = asyncio.create_task(request())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await lim.admit(principal, 10)  # the slot came back


def test_limiter_from_config_builds_the_configured_store() -> None:
    lim = Limiter.from_config(config(), {"TEAM_B_KEY": KEY_B})
    assert isinstance(lim.store, MemoryLimitStore)
    assert "team-a" in repr(lim) and KEY_A not in repr(lim)
    assert isinstance(ApiKeyConfig(name="x", sha256=hash_api_key("k")), ApiKeyConfig)
