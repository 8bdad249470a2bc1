"""Error bodies (OpenAI, vLLM, llama.cpp, FastAPI, plain text) map to one typed exception each.

These run in-process through an injected httpx.MockTransport: status tables need no sockets.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from inferline.client import (
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    BadRequest,
    Client,
    InferlineError,
    NotFound,
    PermissionDenied,
    RateLimited,
    Retry,
    ServerError,
    ServiceUnavailable,
    StreamError,
)
from inferline.client._exceptions import parse_retry_after

ONCE = Retry(max_attempts=1)
MSG = [{"role": "user", "content": "hi"}]

OPENAI_400 = {"error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": None}}
TABLE: list[tuple[int, Any, dict[str, str], type[APIStatusError], dict[str, Any]]] = [
    (400, OPENAI_400, {}, BadRequest, {"type": "invalid_request_error", "param": "messages", "code": None}),
    (422, {"detail": "field required"}, {}, BadRequest, {"message": "field required"}),
    (413, {"error": {"message": "too big", "type": "invalid_request_error"}}, {}, BadRequest, {}),
    (
        401,
        {"error": {"message": "no key", "type": "authentication_error", "code": "invalid_api_key"}},
        {},
        AuthenticationError,
        {"code": "invalid_api_key"},
    ),
    (403, {"error": "forbidden"}, {}, PermissionDenied, {"message": "forbidden"}),
    (
        404,
        {"error": {"message": "no such model", "type": "invalid_request_error", "code": "model_not_found"}},
        {},
        NotFound,
        {"code": "model_not_found"},
    ),
    (
        429,
        {"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limited"}},
        {"retry-after": "7"},
        RateLimited,
        {"retry_after_s": 7.0},
    ),
    # vLLM's flat body, numeric code
    (
        500,
        {"object": "error", "message": "boom", "type": "InternalServerError", "param": None, "code": 500},
        {},
        ServerError,
        {"type": "InternalServerError", "code": "500"},
    ),
    (502, b"<html>Bad Gateway</html>", {}, ServerError, {"message": "<html>Bad Gateway</html>"}),
    # llama.cpp while loading; retry-after-ms wins over retry-after
    (
        503,
        {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
        {"retry-after-ms": "1500", "retry-after": "9"},
        ServiceUnavailable,
        {"type": "unavailable_error", "code": "503", "retry_after_s": 1.5},
    ),
    (418, {"error": {"message": "teapot"}}, {}, APIStatusError, {"status": 418}),
]


def _answer(status: int, body: Any, headers: dict[str, str]) -> httpx.MockTransport:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=raw, headers={"content-type": "application/json", **headers})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(("status", "body", "headers", "cls", "fields"), TABLE)
def test_error_body_maps_to_its_typed_exception(
    status: int, body: Any, headers: dict[str, str], cls: type[APIStatusError], fields: dict[str, Any]
) -> None:
    with (
        Client("http://x/v1", retry=ONCE, transport=_answer(status, body, headers)) as client,
        pytest.raises(APIStatusError) as info,
    ):
        client.complete(messages=MSG)
    exc = info.value
    assert type(exc) is cls and isinstance(exc, InferlineError)
    assert exc.status == status and exc.partial_text == ""
    for name, value in fields.items():
        assert getattr(exc, name) == value, name


async def test_async_client_maps_errors_the_same_way() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "no key", "type": "authentication_error"}})

    transport = httpx.MockTransport(handler)
    async with AsyncClient("http://x/v1", retry=ONCE, transport=transport) as client:
        with pytest.raises(AuthenticationError, match="no key"):
            await client.complete(messages=MSG)


def test_a_200_that_is_not_an_event_stream_is_a_stream_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"choices": []}))
    with (
        Client("http://x/v1", retry=ONCE, transport=transport) as client,
        pytest.raises(StreamError, match="expected text/event-stream"),
    ):
        client.complete(messages=MSG)


def test_the_request_carries_auth_usage_option_and_sampling_fields() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
        body += b"data: [DONE]\n\n"
        headers = {
            "content-type": "text/event-stream",
            "x-inferline-backend": "b1",
            "x-inferline-model": "m1",
        }
        return httpx.Response(200, content=body, headers=headers)

    transport = httpx.MockTransport(handler)
    with Client("http://x/v1/", api_key="sk-1", model="m", transport=transport) as client:
        done = client.complete(messages=MSG, max_tokens=5, temperature=0.2, seed=3)
    assert (done.text, done.backend, done.model, done.usage) == ("ok", "b1", "m1", None)
    req = seen[0]
    assert str(req.url) == "http://x/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-1"
    assert orjson.loads(req.content) == {
        "model": "m",
        "messages": MSG,
        "max_tokens": 5,
        "temperature": 0.2,
        "seed": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 5.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_as_seconds_or_http_date(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412485.0  # 2015-10-21 07:28:05 UTC
    assert parse_retry_after(headers, now_s=now) == expected


def test_arguments_are_checked_before_anything_is_sent() -> None:
    with (
        Client("http://x/v1", transport=_answer(500, b"", {})) as client,
        pytest.raises(ValueError, match="exactly one"),
    ):
        client.stream(messages=MSG, prompt="x")
        with pytest.raises(ValueError, match="`n` must be 1"):
            client.stream(messages=MSG, n=2)
        with pytest.raises(ValueError, match="set by the client"):
            client.stream(messages=MSG, stream=False)
        with pytest.raises(ValueError, match="keep_text"):
            client.stream(messages=MSG, resume=True, keep_text=False)
