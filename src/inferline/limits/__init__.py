"""Rate limits, token budgets and concurrency per API key, in a store shared by every gateway replica.

    config.py    KeyLimits, ApiKeyConfig, LimitsConfig
    keyring.py   KeyRing: bearer token -> ApiKeyConfig by sha256, constant time
    base.py      LimitStore protocol, Reservation, Denial, DenialReason, LimitStoreUnavailable
    memory.py    MemoryLimitStore (one process)
    redis.py     RedisLimitStore (all replicas; lua/reserve.lua, lua/reconcile.lua)
    limiter.py   Limiter: authenticate / admit / release, mapped to GatewayError; what the gateway calls

The registry below is the one place a store name becomes a store (redis is imported only when chosen).
"""

from __future__ import annotations

from collections.abc import Callable

from .base import (
    Denial,
    DenialReason,
    LimitDenied,
    LimitName,
    LimitStore,
    LimitStoreUnavailable,
    Quota,
    RequestTooLarge,
    Reservation,
)
from .config import ApiKeyConfig, KeyLimits, LimitsConfig
from .keyring import KeyRing, KeyRingError, bearer_token, hash_api_key
from .limiter import ANONYMOUS, Limiter
from .memory import MemoryLimitStore

__all__ = [
    "ANONYMOUS",
    "LIMIT_STORES",
    "ApiKeyConfig",
    "Denial",
    "DenialReason",
    "KeyLimits",
    "KeyRing",
    "KeyRingError",
    "LimitDenied",
    "LimitName",
    "LimitStore",
    "LimitStoreUnavailable",
    "Limiter",
    "LimitsConfig",
    "MemoryLimitStore",
    "Quota",
    "RequestTooLarge",
    "Reservation",
    "bearer_token",
    "create_limit_store",
    "hash_api_key",
]


def _memory(config: LimitsConfig) -> LimitStore:
    return MemoryLimitStore(concurrency_lease_s=config.concurrency_lease_s)


def _redis(config: LimitsConfig) -> LimitStore:
    from .redis import RedisLimitStore

    return RedisLimitStore.from_config(config)


LIMIT_STORES: dict[str, Callable[[LimitsConfig], LimitStore]] = {"memory": _memory, "redis": _redis}


def create_limit_store(config: LimitsConfig) -> LimitStore:
    return LIMIT_STORES[config.store](config)
