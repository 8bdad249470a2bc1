"""Limiter: what the gateway calls per request: authenticate, admit (reserve), release (reconcile).

    principal = limiter.authenticate(authorization_header)   # ApiKeyConfig, or raises Unauthorized (401)
    reservation = await limiter.admit(principal, tokens)     # or raises LimitDenied (429) / RequestTooLarge
                                                             # (400) / StoreUnavailable (503, store down)
    ... dispatch ...
    limiter.release_soon(reservation, actual_tokens)         # in `finally`: always, exactly once; never raises

Store failures follow `on_store_error`: fail_closed raises StoreUnavailable (503, code store_unavailable,
Retry-After: when the store's circuit breaker will try it again); fail_open admits with an unrecorded
reservation (no headers, nothing to reconcile) and logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from inferline.errors import StoreUnavailable, Unauthorized

from .base import Denial, LimitStore, LimitStoreUnavailable, Reservation
from .config import ApiKeyConfig, KeyLimits, LimitsConfig
from .keyring import KeyRing, bearer_token

__all__ = ["ANONYMOUS", "Limiter"]

log = logging.getLogger("inferline.limits")

ANONYMOUS = "anonymous"  # the principal of keyless requests when require_api_key is false
STORE_DOWN_RETRY_AFTER_S = 1.0
_LOG_EVERY_S = 10.0  # store-failure warnings at most this often (an outage would otherwise log per request)


class Limiter:
    """Authenticates API keys and enforces their limits through a LimitStore; built once at start-up."""

    def __init__(self, config: LimitsConfig, store: LimitStore, keyring: KeyRing) -> None:
        self._config = config
        self._store = store
        self._keyring = keyring
        self._fail_open = config.on_store_error == "fail_open"
        # No key at all (never in the KeyRing), so built without the one-key-source validation.
        self._anonymous = ApiKeyConfig.model_construct(
            name=ANONYMOUS, sha256=None, key_env=None, limits=config.anonymous_limits, priority_class=None
        )
        self._pending: set[asyncio.Task[None]] = set()
        self._last_warning = 0.0
        self.store_errors_total = 0  # admit and release calls that found the store unavailable
        self.unmetered_total = 0  # requests admitted without a record under fail_open

    @classmethod
    def from_config(cls, config: LimitsConfig, environ: Mapping[str, str] | None = None) -> Limiter:
        from . import create_limit_store  # the registry lives in the package

        return cls(config, create_limit_store(config), KeyRing(config.keys, environ))

    @property
    def store(self) -> LimitStore:
        return self._store

    def authenticate(self, authorization: bytes | str | None) -> ApiKeyConfig:
        """The key config of an `Authorization` header value. Raises Unauthorized; never echoes the key.

        With no keys configured, authentication is off: every request is anonymous (anonymous_limits),
        whatever key it sends (the OpenAI SDKs always send one)."""
        if not self._config.keys:
            return self._anonymous
        token = bearer_token(authorization)
        if token is None:
            if self._config.require_api_key:
                raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
            return self._anonymous
        found = self._keyring.lookup(token)
        if found is None:
            raise Unauthorized("invalid API key")
        return found

    async def admit(self, principal: ApiKeyConfig, tokens: int) -> Reservation:
        """Reserve `tokens` (prompt estimate + max_tokens) against the principal's limits, or raise."""
        return await self.admit_limits(principal.name, principal.limits, tokens)

    async def admit_limits(self, key_name: str, limits: KeyLimits, tokens: int) -> Reservation:
        try:
            result = await self._store.reserve(key_name, limits, tokens)
        except LimitStoreUnavailable as exc:
            self.store_errors_total += 1
            self._warn("limit store unavailable (%s); %s", exc, "admitting unmetered" if self._fail_open else "503")
            if self._fail_open:
                self.unmetered_total += 1
                return Reservation.unrecorded(key_name, tokens)
            raise StoreUnavailable(
                "rate-limit store unavailable; retry shortly",
                retry_after_s=max(STORE_DOWN_RETRY_AFTER_S, exc.retry_after_s or 0.0),
            ) from exc
        if isinstance(result, Denial):
            raise result.error()
        return result

    async def release(self, reservation: Reservation, actual_tokens: int | None) -> None:
        """Reconcile: charge actual tokens (None: unknown, keep the reservation) and free the slot.

        Finishes even when the caller is cancelled (the work runs in a task of its own), and never raises:
        a failure is logged and counted (the reservation then stays charged and its concurrency lease
        expires after concurrency_lease_s)."""
        if reservation.recorded:
            await asyncio.shield(self._spawn(reservation, actual_tokens))

    def release_soon(self, reservation: Reservation, actual_tokens: int | None) -> None:
        """release() in a background task kept until it ends; `aclose` waits for the ones still running."""
        if reservation.recorded:
            self._spawn(reservation, actual_tokens)

    def _spawn(self, reservation: Reservation, actual_tokens: int | None) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._reconcile(reservation, actual_tokens))
        self._pending.add(task)  # a strong reference until done: the loop keeps only weak ones
        task.add_done_callback(self._pending.discard)
        return task

    async def _reconcile(self, reservation: Reservation, actual_tokens: int | None) -> None:
        try:
            await self._store.reconcile(reservation, actual_tokens)
        except LimitStoreUnavailable as exc:
            self.store_errors_total += 1
            self._warn("limit store unavailable at reconcile of key %r (%s)", reservation.key_name, exc)
        except Exception:  # a bug must not surface on the request path that already answered
            log.exception("reconcile failed for key %r", reservation.key_name)

    def _warn(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_S:
            self._last_warning = now
            log.warning(msg + " [store errors so far: %d]", *args, self.store_errors_total)

    async def aclose(self) -> None:
        """Wait for background reconciles (bounded by the store timeout each), then close the store."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._store.aclose()

    def __repr__(self) -> str:
        return f"Limiter(store={self._store!r}, keys={self._keyring!r}, on_store_error={self._config.on_store_error})"
