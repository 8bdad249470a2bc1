"""Retries happen only before the first token, wait as the server says, and never repeat text."""

from __future__ import annotations

import email.utils
import time

import pytest
from client_fault_server import FaultServer, Reply, Sse

from inferline.client import (
    APIConnectionError,
    AsyncClient,
    Client,
    RateLimited,
    Retry,
    ServiceUnavailable,
    StreamError,
    Usage,
)

FAST = Retry(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
MSG = [{"role": "user", "content": "hi"}]


def _busy(status: int, retry_after: str | None = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    kind = "rate_limit_error" if status == 429 else "service_unavailable"
    return Reply(status, {"error": {"message": "busy", "type": kind, "code": "x"}}, headers)


def test_429_then_503_then_success_waits_as_told_and_streams_once(fault: FaultServer) -> None:
    fault.reset(_busy(429, "1"), _busy(503), Sse(["a", "b", "c"]))
    with Client(fault.url, retry=FAST) as client, client.stream(messages=MSG, max_tokens=8) as s:
        deltas = list(s)
    assert deltas == ["a", "b", "c"]
    assert s.attempts == 3 and s.finish_reason == "stop"
    assert s.usage == Usage(7, 3, 10)
    t = [r.t for r in fault.requests]
    assert t[1] - t[0] >= 1.0  # Retry-After: 1 honoured
    assert t[2] - t[1] < 0.5  # 503 without Retry-After: full-jitter backoff, capped at 0.05 s here


async def test_async_honours_retry_after_as_an_http_date(fault: FaultServer) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # 1-s resolution: waits 1..2 s
    fault.reset(_busy(503, when), Sse(["x", "y"]))
    async with AsyncClient(fault.url, retry=FAST) as client:
        done = await client.complete(messages=MSG)
    assert done.text == "xy" and done.attempts == 2
    assert fault.requests[1].t - fault.requests[0].t >= 0.9


def test_gives_up_after_max_attempts_with_the_last_typed_error(fault: FaultServer) -> None:
    fault.reset(_busy(503), _busy(503), _busy(503), Sse(["never"]))
    with Client(fault.url, retry=FAST) as client, pytest.raises(ServiceUnavailable) as info:
        client.complete(messages=MSG)
    assert len(fault.requests) == 3
    assert info.value.status == 503 and info.value.partial_text == ""


def test_a_retry_after_longer_than_allowed_is_raised_not_waited(fault: FaultServer) -> None:
    fault.reset(_busy(429, "3600"), Sse(["never"]))
    t0 = time.monotonic()
    with Client(fault.url, retry=FAST) as client, pytest.raises(RateLimited) as info:
        client.complete(messages=MSG)
    assert time.monotonic() - t0 < 30  # raised at once, not after the 3600 s it was told to wait
    assert info.value.retry_after_s == 3600 and len(fault.requests) == 1


def test_a_client_error_is_not_retried(fault: FaultServer) -> None:
    fault.reset(Reply(400, {"error": {"message": "bad", "type": "invalid_request_error"}}), Sse(["x"]))
    with Client(fault.url, retry=FAST) as client, pytest.raises(Exception, match="bad"):
        client.complete(messages=MSG)
    assert len(fault.requests) == 1


def test_connection_refused_is_retried_then_raised() -> None:
    with Client("http://127.0.0.1:9/v1", retry=FAST) as client:
        s = client.stream(messages=MSG)
        with pytest.raises(APIConnectionError):
            list(s)
    assert s.attempts == 3


@pytest.mark.parametrize("end", ["drop", "eof", "error"])
def test_a_failure_after_the_first_token_raises_with_partial_text_and_is_not_retried(
    fault: FaultServer, end: str
) -> None:
    fault.reset(Sse(["Hel", "lo"], end=end), Sse(["must", " not", " appear"]))
    seen: list[str] = []
    with Client(fault.url, retry=FAST) as client, pytest.raises(StreamError) as info:
        for delta in client.stream(messages=MSG):
            seen.append(delta)
    assert seen == ["Hel", "lo"]
    assert info.value.partial_text == "Hello"
    assert len(fault.requests) == 1
    if end == "error":
        assert info.value.type == "upstream_error" and info.value.code == "502"
    if end == "eof":
        assert "without [DONE]" in str(info.value)


def test_a_transient_error_event_before_the_first_token_is_retried(fault: FaultServer) -> None:
    fault.reset(Sse([], end="error"), Sse(["ok"]))
    with Client(fault.url, retry=FAST) as client:
        assert client.complete(messages=MSG).text == "ok"
    assert len(fault.requests) == 2


def test_an_invalid_request_error_event_is_not_retried(fault: FaultServer) -> None:
    bad = {"message": "prompt too long", "type": "invalid_request_error", "code": 400}
    fault.reset(Sse([], end="error", error=bad), Sse(["x"]))
    with Client(fault.url, retry=FAST) as client, pytest.raises(StreamError) as info:
        client.complete(messages=MSG)
    assert info.value.type == "invalid_request_error" and not info.value.transient
    assert len(fault.requests) == 1


def test_resume_continues_from_the_partial_answer_and_yields_each_piece_once(fault: FaultServer) -> None:
    fault.reset(
        Sse(["The", " quick"], end="drop"),
        Sse([" brown", " fox"], usage=(20, 2)),
    )
    with (
        Client(fault.url, retry=FAST, model="m") as client,
        client.stream(messages=MSG, max_tokens=10, resume=True) as s,
    ):
        deltas = list(s)
    assert deltas == ["The", " quick", " brown", " fox"]
    assert s.text == "The quick brown fox" and s.resumed == 1 and s.attempts == 2
    cont = fault.requests[1].body
    assert cont["messages"] == [*MSG, {"role": "assistant", "content": "The quick"}]
    assert cont["continue_final_message"] is True and cont["add_generation_prompt"] is False
    assert cont["max_tokens"] == 8 and cont["stream"] is True
    # the first attempt's 2 chunks (no usage arrived) plus the continuation's usage
    assert s.usage == Usage(20, 4, 24)


async def test_resume_on_completions_appends_to_the_prompt(fault: FaultServer) -> None:
    fault.reset(Sse(["Once", " upon"], end="error"), Sse([" a", " time"]))
    async with AsyncClient(fault.url, retry=FAST, resume=True) as client:
        s = client.stream(prompt="Story:", max_tokens=6)
        deltas = [d async for d in s]
    assert deltas == ["Once", " upon", " a", " time"]
    assert fault.requests[1].path == "/v1/completions"
    assert fault.requests[1].body["prompt"] == "Story:Once upon"
    assert fault.requests[1].body["max_tokens"] == 4


def test_resume_gives_up_after_max_attempts_with_all_partial_text(fault: FaultServer) -> None:
    fault.reset(Sse(["a"], end="drop"), Sse(["b"], end="drop"), Sse(["c"], end="drop"), Sse(["d"]))
    with Client(fault.url, retry=FAST) as client, pytest.raises(StreamError) as info:
        client.complete(messages=MSG, resume=True)
    assert info.value.partial_text == "abc"
    assert len(fault.requests) == 3
