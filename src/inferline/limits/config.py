"""Typed configuration of API keys, their limits and budgets.

API keys never appear in plain text here: a key is given by its sha256 hex digest, or by the name of an
environment variable that holds it (resolved once, hashed, and dropped by `KeyRing`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BREAKER_COOLDOWN_S",
    "BREAKER_FAILURE_THRESHOLD",
    "CONCURRENCY_LEASE_S",
    "SINGLE_FLIGHT_WAIT_S",
    "STORE_TIMEOUT_S",
    "ApiKeyConfig",
    "KeyLimits",
    "LimitsConfig",
    "StoreBreakerConfig",
]

# Defaults, named once.
STORE_TIMEOUT_S = 0.25  # a limit check adds at most this much to a request when Redis is slow or gone
# A reservation that is never reconciled (a gateway crashed mid-request) frees its concurrency slot after
# this long. Longer than the gateway's request timeout (600 s), so a live request never loses its slot.
CONCURRENCY_LEASE_S = 900.0
# A request that finds an identical one in flight waits at most this long for its answer, then calls the
# engine itself: longer than a typical short generation, far shorter than the request timeout.
SINGLE_FLIGHT_WAIT_S = 60.0
# The circuit breaker around Redis (limits/breaker.py). Five consecutive failures: one or two blips (a
# connection reset by a Redis restart, already retried once) never trip it; five in a row is an outage.
BREAKER_FAILURE_THRESHOLD = 5
# While open, Redis is skipped for this long, then one request tries it: a dead Redis costs one timeout
# every 2 s instead of one per request, and limits are enforced again within ~2 s of Redis coming back.
BREAKER_COOLDOWN_S = 2.0

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"  # no braces: names sit inside a Redis hash tag
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoreBreakerConfig(_Section):
    """The circuit breaker around a Redis store: when to stop waiting on it, and when to try it again."""

    failure_threshold: int = Field(
        BREAKER_FAILURE_THRESHOLD,
        ge=1,
        description="Consecutive failures or timeouts after which the store is skipped (the circuit opens). "
        "Five: a blip (a connection reset by a Redis restart, already retried once) never trips it.",
    )
    cooldown_s: float = Field(
        BREAKER_COOLDOWN_S,
        gt=0,
        le=300,
        description="How long an open circuit skips the store before one request tries it again (half-open). "
        "Short, so limits hold again soon after Redis returns; a dead Redis then costs one timeout per cool-down "
        "instead of one per request. Also the Retry-After of the 503s sent meanwhile (fail_closed).",
    )


class KeyLimits(_Section):
    """Limits of one API key. Every field is optional: None means unlimited."""

    requests_per_minute: int | None = Field(
        None, ge=1, description="Requests admitted in any rolling 60 s window (sliding log)."
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="Tokens (prompt + max_tokens reserved, refunded to actual use) in any rolling 60 s window.",
    )
    max_concurrent: int | None = Field(None, ge=1, description="Requests of this key in flight at once.")
    tokens_per_day: int | None = Field(None, ge=1, description="Token budget per UTC calendar day.")
    tokens_per_month: int | None = Field(None, ge=1, description="Token budget per UTC calendar month.")
    max_tokens_per_request: int | None = Field(
        None, ge=1, description="Largest reservation (prompt + max_tokens) one request may make; larger gets 400."
    )

    @property
    def unlimited(self) -> bool:
        """True when no shared-state limit is set (the store is not consulted at all)."""
        return (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.max_concurrent is None
            and self.tokens_per_day is None
            and self.tokens_per_month is None
        )


class ApiKeyConfig(_Section):
    """One client API key: who it is, how to recognise it, and what it may use."""

    name: str = Field(
        ...,
        pattern=_NAME_PATTERN,
        description="Unique key name; shown in logs, metrics and limit messages (never the key itself).",
    )
    sha256: str | None = Field(
        None,
        repr=False,
        description='Lower-case sha256 hex digest of the key (`printf %s "$KEY" | sha256sum`).',
    )
    key_env: str | None = Field(
        None, description="Environment variable that holds the key; read once at start-up and hashed."
    )
    limits: KeyLimits = Field(default_factory=KeyLimits, description="Rate limits and budgets of this key.")
    priority_class: str | None = Field(
        None, description="Scheduling class the gateway's queue gives this key's requests (None: default)."
    )

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().lower()
        if not _SHA256_HEX.match(v):
            raise ValueError("`sha256` must be 64 hex digits (the sha256 of the key, not the key itself)")
        return v

    @field_validator("key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(f"`key_env` must be an environment variable name; got {v!r}")
        return v

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ApiKeyConfig:
        if (self.sha256 is None) == (self.key_env is None):
            raise ValueError(f"key {self.name!r} needs exactly one of `sha256` or `key_env`")
        return self


class LimitsConfig(_Section):
    """Where limit state lives, what happens when that store fails, and the API keys."""

    store: Literal["memory", "redis"] = Field(
        "memory",
        description="memory: per gateway process (limits multiply with replicas); redis: shared by all replicas.",
    )
    redis_url: str | None = Field(None, description="redis://host:port/db of the shared store (store: redis).")
    key_prefix: str = Field(
        "inferline:limits", min_length=1, max_length=64, description="Prefix of every Redis key this store writes."
    )
    on_store_error: Literal["fail_closed", "fail_open"] = Field(
        "fail_closed",
        description="When the store is unreachable: fail_closed answers 503 (limits and budgets keep holding, "
        "the engines stay protected); fail_open admits unmetered (availability over enforcement).",
    )
    store_timeout_s: float = Field(
        STORE_TIMEOUT_S,
        gt=0,
        le=5,
        description="Upper bound on one store call; slower counts as a store error (and toward the breaker). "
        "0.25 s: a Redis round trip is ~0.1 ms, so only a sick Redis is this slow, and a request pays at most "
        "this much for a limit check.",
    )
    concurrency_lease_s: float = Field(
        CONCURRENCY_LEASE_S,
        gt=0,
        description="A reservation never reconciled (crashed gateway) frees its concurrency slot after this long.",
    )
    breaker: StoreBreakerConfig = Field(
        default_factory=StoreBreakerConfig,
        description="Circuit breaker around the Redis store: while open, on_store_error applies at once instead "
        "of after store_timeout_s per request.",
    )
    require_api_key: bool = Field(
        True, description="Reject requests without a known key (401). False: keyless requests are 'anonymous'."
    )
    anonymous_limits: KeyLimits = Field(
        default_factory=KeyLimits, description="Limits of keyless requests when require_api_key is false."
    )
    keys: list[ApiKeyConfig] = Field(default_factory=list, description="The API keys clients may present.")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"`redis_url` must start with redis://, rediss:// or unix://; got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> LimitsConfig:
        errors: list[str] = []
        if self.store == "redis" and not self.redis_url:
            errors.append("store: redis needs `redis_url`")
        names = [k.name for k in self.keys]
        dup_names = sorted({n for n in names if names.count(n) > 1})
        if dup_names:
            errors.append(f"duplicate key names: {dup_names}")
        if "anonymous" in names:
            errors.append("'anonymous' is reserved for keyless requests; rename that key")
        digests = [k.sha256 for k in self.keys if k.sha256]
        if len(digests) != len(set(digests)):
            errors.append("two keys have the same `sha256`")
        if errors:
            raise ValueError("; ".join(errors))
        return self
