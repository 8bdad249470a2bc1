"""LimitsConfig, ApiKeyConfig, KeyLimits, CacheConfig: validation, and the YAML example in docs/limits.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from inferline.cache import CacheConfig
from inferline.config import InferlineConfig
from inferline.limits import ApiKeyConfig, KeyLimits, KeyRing, LimitsConfig, hash_api_key

DOC = Path(__file__).resolve().parents[2] / "docs" / "limits.md"
DIGEST = hash_api_key("sk-example")


def doc_yaml() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    data: dict[str, Any] = yaml.safe_load(blocks[0])
    return data


def test_the_documented_yaml_is_a_valid_config() -> None:
    data = doc_yaml()
    limits = LimitsConfig.model_validate(data["limits"])
    cache = CacheConfig.model_validate(data["cache"])
    assert limits.store == "redis" and limits.on_store_error == "fail_closed"
    assert [k.name for k in limits.keys] == ["team-a", "nightly-batch"]
    assert limits.keys[0].limits.tokens_per_minute == 200000
    assert cache.enabled and cache.only_deterministic
    ring = KeyRing(limits.keys, {"INFERLINE_KEY_NIGHTLY_BATCH": "sk-nightly"})
    assert ring.lookup("sk-nightly") is limits.keys[1]
    full = InferlineConfig.model_validate(data)  # the sections as the gateway's config holds them
    assert full.limits == limits and full.cache == cache


@pytest.mark.parametrize("model", [KeyLimits, ApiKeyConfig, LimitsConfig, CacheConfig])
def test_every_field_is_described_and_models_are_frozen_and_strict(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"
    assert model.model_config.get("frozen") is True
    assert model.model_config.get("extra") == "forbid"


def test_defaults_fail_closed_and_limit_nothing() -> None:
    cfg = LimitsConfig()
    assert cfg.store == "memory" and cfg.on_store_error == "fail_closed" and cfg.require_api_key
    assert KeyLimits().unlimited
    assert not KeyLimits(tokens_per_day=1).unlimited
    assert KeyLimits(max_tokens_per_request=10).unlimited  # needs no shared state
    assert CacheConfig().enabled is False


def errors_of(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return str(info.value)


def test_a_key_is_given_by_exactly_one_of_sha256_or_key_env() -> None:
    assert "exactly one of `sha256` or `key_env`" in errors_of(ApiKeyConfig, {"name": "a"})
    both = {"name": "a", "sha256": DIGEST, "key_env": "K"}
    assert "exactly one of `sha256` or `key_env`" in errors_of(ApiKeyConfig, both)


def test_a_plain_text_key_in_sha256_is_refused() -> None:
    msg = errors_of(ApiKeyConfig, {"name": "a", "sha256": "sk-live-abcdef"})
    assert "must be 64 hex digits (the sha256 of the key, not the key itself)" in msg
    assert "sk-live-abcdef" not in msg.split("input_value")[0]
    upper = ApiKeyConfig(name="a", sha256=DIGEST.upper())
    assert upper.sha256 == DIGEST
    assert DIGEST not in repr(upper)


def test_names_and_env_var_names_are_checked() -> None:
    assert "pattern" in errors_of(ApiKeyConfig, {"name": "team {a}", "sha256": DIGEST})
    assert "environment variable name" in errors_of(ApiKeyConfig, {"name": "a", "key_env": "not-an env"})


def test_limits_config_cross_checks() -> None:
    key = {"name": "a", "sha256": DIGEST}
    assert "store: redis needs `redis_url`" in errors_of(LimitsConfig, {"store": "redis"})
    assert "duplicate key names: ['a']" in errors_of(LimitsConfig, {"keys": [key, {**key, "sha256": "0" * 64}]})
    assert "two keys have the same `sha256`" in errors_of(LimitsConfig, {"keys": [key, {**key, "name": "b"}]})
    assert "'anonymous' is reserved" in errors_of(LimitsConfig, {"keys": [{**key, "name": "anonymous"}]})
    assert "must start with redis://" in errors_of(LimitsConfig, {"redis_url": "http://x"})
    assert "Extra inputs are not permitted" in errors_of(LimitsConfig, {"kyes": []})
    assert "greater than or equal to 1" in errors_of(KeyLimits, {"requests_per_minute": 0})


def test_cache_config_needs_a_url_for_redis() -> None:
    assert "cache store: redis needs `redis_url`" in errors_of(CacheConfig, {"enabled": True, "store": "redis"})
    assert CacheConfig(store="redis").enabled is False  # disabled: no url needed
