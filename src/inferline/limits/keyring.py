"""KeyRing: a presented bearer token -> its ApiKeyConfig, by sha256, in constant time; keys never shown.

Only sha256 digests are kept. A lookup hashes the presented token, selects candidates by the digest's
first 8 bytes (a dict probe), and verifies each candidate's full digest with `hmac.compare_digest`
(selector / verifier). The probe is not constant time, but all its timing can reveal is how the first
bytes of sha256(guess) relate to a stored digest's, which does not lead back to any key (preimage
resistance); the full comparison is constant time, and the key itself is never compared. Cost: one
sha256 and one probe whatever the number of keys (a compare_digest scan of every digest would cost
~0.2 µs per configured key, 200 µs at 1000 keys).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from .config import ApiKeyConfig

__all__ = ["KeyRing", "KeyRingError", "bearer_token", "hash_api_key"]

_BEARER = b"bearer "
_SELECTOR_BYTES = 8


class KeyRingError(ValueError):
    """The configured keys cannot be used (a `key_env` variable is unset or empty, or two keys are equal)."""


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

    __slots__ = ("_index", "_names")

    def __init__(self, keys: Sequence[ApiKeyConfig], environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        index: dict[bytes, list[tuple[bytes, ApiKeyConfig]]] = {}  # digest[:8] -> [(digest, config)]
        problems: list[str] = []
        for cfg in keys:
            if cfg.sha256 is not None:
                digest = bytes.fromhex(cfg.sha256)
            else:
                assert cfg.key_env is not None  # ApiKeyConfig guarantees exactly one source
                value = env.get(cfg.key_env, "")
                if not value:
                    problems.append(f"key {cfg.name!r}: environment variable {cfg.key_env} is unset or empty")
                    continue
                digest = hashlib.sha256(value.encode()).digest()
            bucket = index.setdefault(digest[:_SELECTOR_BYTES], [])
            twins = [other.name for d, other in bucket if d == digest]
            if twins:
                problems.append(f"keys {twins[0]!r} and {cfg.name!r} are the same key")
            bucket.append((digest, cfg))
        if problems:
            raise KeyRingError("; ".join(problems))
        self._index = index
        self._names = [cfg.name for cfg in keys]

    def lookup(self, token: bytes | str) -> ApiKeyConfig | None:
        """The key config whose digest matches sha256(token), or None."""
        raw = token.encode() if isinstance(token, str) else token
        digest = hashlib.sha256(raw).digest()
        found: ApiKeyConfig | None = None
        for stored, cfg in self._index.get(digest[:_SELECTOR_BYTES], ()):
            if hmac.compare_digest(stored, digest):
                found = cfg
        return found

    def names(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._names)} keys: {', '.join(self._names)})"
