"""Every bad input gets the OpenAI error shape and the right 4xx — checked with raw HTTP and the real SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from support import Proc

MSG = [{"role": "user", "content": "hi"}]

# (case, method, path, body or raw bytes, status, error type, param)
CASES: list[tuple[str, str, str, Any, int, str, str | None]] = [
    ("invalid json", "POST", "/v1/chat/completions", b"{not json", 400, "invalid_request_error", None),
    ("body not an object", "POST", "/v1/chat/completions", b"[1,2]", 400, "invalid_request_error", None),
    (
        "missing messages",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2"},
        400,
        "invalid_request_error",
        "messages",
    ),
    (
        "empty messages",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": []},
        400,
        "invalid_request_error",
        "messages",
    ),
    (
        "message without role",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": [{"content": "x"}]},
        400,
        "invalid_request_error",
        "messages.0.role",
    ),
    (
        "wrong type max_tokens",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": MSG, "max_tokens": "ten"},
        400,
        "invalid_request_error",
        "max_tokens",
    ),
    (
        "zero max_tokens",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": MSG, "max_tokens": 0},
        400,
        "invalid_request_error",
        "max_tokens",
    ),
    (
        "negative max_tokens",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": MSG, "max_tokens": -5},
        400,
        "invalid_request_error",
        "max_tokens",
    ),
    (
        "max_tokens beyond context",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": MSG, "max_tokens": 1_000_000},
        400,
        "invalid_request_error",
        "max_tokens",
    ),
    (
        "temperature out of range",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": MSG, "temperature": 7},
        400,
        "invalid_request_error",
        "temperature",
    ),
    (
        "stream not a bool",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": MSG, "stream": "yes"},
        400,
        "invalid_request_error",
        "stream",
    ),
    (
        "missing model",
        "POST",
        "/v1/chat/completions",
        {"messages": MSG},
        400,
        "invalid_request_error",
        "model",
    ),
    (
        "unknown model",
        "POST",
        "/v1/chat/completions",
        {"model": "gpt-9", "messages": MSG},
        404,
        "invalid_request_error",
        "model",
    ),
    (
        "tools on the embedded engine",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2", "messages": MSG, "tools": [{"type": "function", "function": {"name": "f"}}]},
        400,
        "invalid_request_error",
        "tools",
    ),
    (
        "empty prompt",
        "POST",
        "/v1/completions",
        {"model": "smollm2", "prompt": ""},
        400,
        "invalid_request_error",
        "prompt",
    ),
    ("wrong method", "GET", "/v1/chat/completions", None, 405, "invalid_request_error", None),
    (
        "echo on the embedded engine",
        "POST",
        "/v1/completions",
        {"model": "smollm2", "prompt": "hi", "echo": True},
        400,
        "invalid_request_error",
        "echo",
    ),
    ("unknown route", "POST", "/v1/nothing", {}, 404, "invalid_request_error", None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_openai_error_shape(gateway: Proc, case: tuple[Any, ...]) -> None:
    _, method, path, body, status, etype, param = case
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs["content"] = body
        kwargs["headers"] = {"content-type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    r = httpx.request(method, gateway.url + path, timeout=30, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == etype
    assert err["message"]
    if param is not None:
        assert err["param"] == param


def test_prompt_longer_than_context_is_400(gateway: Proc) -> None:
    long_text = "word " * 3000  # ~3000 tokens; the suite's engine has 1024 per slot
    r = httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": long_text}], "max_tokens": 4},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_oversize_body_is_413(gateway: Proc) -> None:
    big = {"model": "smollm2", "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    r = httpx.post(gateway.base_url + "/chat/completions", json=big, timeout=30)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


# The openai SDK picks its exception class by status: the status table is the contract.
SDK_CASES = [
    ({"messages": []}, openai.BadRequestError),
    ({"messages": MSG, "max_tokens": -1}, openai.BadRequestError),
    ({"messages": MSG, "model": "no-such-model"}, openai.NotFoundError),
]


@pytest.mark.parametrize("extra,exc", SDK_CASES)
def test_sdk_raises_the_matching_exception(gateway: Proc, extra: dict[str, Any], exc: type[Exception]) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)
    args: dict[str, Any] = {"model": "smollm2", **extra}
    with pytest.raises(exc) as info:
        client.chat.completions.create(**args)
    assert isinstance(info.value, openai.APIStatusError)
    assert info.value.body is not None
