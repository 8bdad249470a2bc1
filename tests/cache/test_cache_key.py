"""cache_key normalization and cacheable()."""

from __future__ import annotations

from typing import Any

import pytest

from inferline.cache import EXCLUDED_FIELDS, cache_key, cacheable

BODY: dict[str, Any] = {
    "model": "smollm2",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    "temperature": 0,
    "max_tokens": 16,
}


def test_key_order_does_not_change_the_key() -> None:
    reordered = {
        "max_tokens": 16,
        "temperature": 0,
        "messages": [{"content": "be brief", "role": "system"}, {"content": "hi", "role": "user"}],
        "model": "smollm2",
    }
    assert cache_key(BODY, "chat") == cache_key(reordered, "chat")
    assert len(cache_key(BODY, "chat")) == 64


def test_delivery_fields_do_not_change_the_key() -> None:
    streamed = BODY | {"stream": True, "stream_options": {"include_usage": True}, "user": "u-42"}
    assert cache_key(BODY, "chat") == cache_key(streamed, "chat")
    assert {"stream", "stream_options", "user"} <= EXCLUDED_FIELDS


def test_integer_and_float_sampling_values_are_the_same() -> None:
    assert cache_key(BODY, "chat") == cache_key(BODY | {"temperature": 0.0}, "chat")
    assert cache_key(BODY | {"top_p": 1}, "chat") == cache_key(BODY | {"top_p": 1.0}, "chat")


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.7},
        {"max_tokens": 17},
        {"seed": 1},
        {"model": "other"},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"stop": ["\n"]},
        {"n": 2},
        {"response_format": {"type": "json_object"}},
        {"some_future_field": True},  # unknown fields count: a miss, never a wrong hit
    ],
)
def test_output_changing_fields_change_the_key(change: dict[str, Any]) -> None:
    assert cache_key(BODY, "chat") != cache_key(BODY | change, "chat")


def test_kind_and_scope_partition_the_key_space() -> None:
    assert cache_key(BODY, "chat") != cache_key(BODY, "completions")
    assert cache_key(BODY, "chat", scope="team-a") != cache_key(BODY, "chat", scope="team-b")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({"temperature": 0.8, "seed": 7}, True),
        ({"seed": 0}, True),
        ({}, False),  # engine default temperature 1.0
        ({"temperature": 0.2}, False),
        ({"temperature": None, "seed": None}, False),
        ({"seed": True}, False),
        ({"temperature": False}, False),
    ],
)
def test_cacheable_means_deterministic(body: dict[str, Any], expected: bool) -> None:
    assert cacheable(body) is expected


def test_cacheable_everything_when_not_only_deterministic() -> None:
    assert cacheable({"temperature": 0.9}, only_deterministic=False) is True
