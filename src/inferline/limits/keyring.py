"""KeyRing: a presented bearer token -> its ApiKeyConfig, by sha256, in constant time; keys never shown.

Only sha256 digests are kept. A lookup hashes the presented token and compares it with every stored
digest using `hmac.compare_digest`, without stopping at a match, so the time taken does not depend on
which key (if any) matched. Cost: one sha256 plus one 32-byte compare per configured key (~0.1 µs each).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from .config import ApiKeyConfig

__all__ = ["KeyRing", "KeyRingError", "bearer_token", "hash_api_key"]

_BEARER = b"bearer "


class KeyRingError(ValueError):
    """The configured keys cannot be used (an env var named by `key_env` is unset or empty)."""


def hash_api_key(key: str | bytes) -> str:
    """The sha256 hex digest to put in a key's `sha256` field."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()


def bearer_token(authorization: bytes | str | None) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header value; None when absent or another scheme."""
    if authorization is None:
        return None
    raw = authorization.encode("latin-1") if isinstance(authorization, str) else authorization
    if raw[:7].lower() != _BEARER:
        return None
    token = raw[7:].strip()
    return token or None


class KeyRing:
    """Maps a presented API key to its ApiKeyConfig. Holds digests only; repr shows names, never keys."""

    __slots__ = ("_entries",)

    def __init__(self, keys: Sequence[ApiKeyConfig], environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        entries: list[tuple[bytes, ApiKeyConfig]] = []
        missing: list[str] = []
        for cfg in keys:
            if cfg.sha256 is not None:
                digest = bytes.fromhex(cfg.sha256)
            else:
                assert cfg.key_env is not None  # ApiKeyConfig guarantees exactly one source
                value = env.get(cfg.key_env, "")
                if not value:
                    missing.append(f"key {cfg.name!r}: environment variable {cfg.key_env} is unset or empty")
                    continue
                digest = hashlib.sha256(value.encode()).digest()
            entries.append((digest, cfg))
        if missing:
            raise KeyRingError("; ".join(missing))
        self._entries: tuple[tuple[bytes, ApiKeyConfig], ...] = tuple(entries)

    def lookup(self, token: bytes | str) -> ApiKeyConfig | None:
        """The key config whose digest matches sha256(token), or None. Constant time in the match position."""
        raw = token.encode() if isinstance(token, str) else token
        digest = hashlib.sha256(raw).digest()
        found: ApiKeyConfig | None = None
        for stored, cfg in self._entries:
            if hmac.compare_digest(stored, digest) and found is None:
                found = cfg
        return found

    def names(self) -> list[str]:
        return [cfg.name for _, cfg in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._entries)} keys: {', '.join(self.names())})"
