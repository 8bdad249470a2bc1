"""cache_key: sha256 of the normalized request; cacheable: whether its output is reproducible.

Normalized: the body minus fields that do not change the output (stream, stream_options, user, and
routing or bookkeeping fields), keys sorted at every level, sampling numbers as floats (0 == 0.0).
Every other field is part of the key, so a field this module has never heard of makes a different key
(a miss) rather than a wrong hit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["EXCLUDED_FIELDS", "cache_key", "cacheable"]

KEY_VERSION = "v1"  # bump when normalization changes, so old entries are never served for new keys
# Fields that change how or to whom the answer is delivered, not what it says.
EXCLUDED_FIELDS = frozenset(
    {"stream", "stream_options", "user", "metadata", "store", "service_tier", "priority", "request_id"}
)
_FLOAT_FIELDS = frozenset(
    {"temperature", "top_p", "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty"}
)


def _normalized(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in body.items():
        if k in EXCLUDED_FIELDS:
            continue
        if k in _FLOAT_FIELDS and isinstance(v, int | float) and not isinstance(v, bool):
            v = float(v)
        out[k] = v
    return out


def cache_key(body: Mapping[str, Any], kind: str, scope: str = "") -> str:
    """Hex sha256 naming this request's response. `kind`: "chat" | "completions". `scope` partitions the
    cache (e.g. by API key name, so one tenant's hits never reveal another's prompts); "" shares it."""
    payload = orjson.dumps([KEY_VERSION, kind, scope, _normalized(body)], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


def cacheable(body: Mapping[str, Any], only_deterministic: bool = True) -> bool:
    """Whether a response to `body` may be served again: with only_deterministic, temperature 0 or a seed.

    An absent temperature means the engine default (1.0): not deterministic unless a seed is given."""
    if not only_deterministic:
        return True
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return True
    temperature = body.get("temperature")
    return isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0
