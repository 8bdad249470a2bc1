"""Budgets and per-call limits stop the stream exactly, close the connection and say what was received.

The fault server ignores max_tokens, so these exercise the client's own counting, not the server's cap.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from client_fault_server import FaultServer, Firehose, Sse

from inferline.client import AsyncClient, Budget, BudgetExceeded, Client, Retry, StreamError, Usage

ONCE = Retry(max_attempts=1)
MSG = [{"role": "user", "content": "hi"}]


def _wait_disconnect(fault: FaultServer, within_s: float = 30.0) -> float:
    """The server saw the client leave (a generous deadline: the streams here never end by themselves)."""
    deadline = time.monotonic() + within_s
    while fault.disconnected_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fault.disconnected_at is not None, "the server never saw the client leave"
    return fault.disconnected_at


def test_a_session_budget_spans_calls_and_stops_mid_stream(fault: FaultServer) -> None:
    budget = Budget(total_tokens=10)
    fault.reset(Sse(["a"] * 6), Firehose())
    with Client(fault.url, retry=ONCE, budget=budget) as client:
        first = client.complete(messages=MSG, max_tokens=50)
        assert first.usage == Usage(7, 6, 13) and budget.used_tokens == 6
        assert fault.requests[0].body["max_tokens"] == 10  # asked for at most what is left
        seen: list[str] = []
        with pytest.raises(BudgetExceeded) as info:
            for delta in client.stream(messages=MSG, max_tokens=50):
                seen.append(delta)
    assert fault.requests[1].body["max_tokens"] == 4
    assert len(seen) == 4 and info.value.partial_text == "xxxx" and info.value.limit == "budget"
    assert budget.used_tokens == 10 and budget.remaining_tokens == 0
    _wait_disconnect(fault)  # the connection was closed: the server stops generating
    with pytest.raises(BudgetExceeded):  # a spent budget refuses before sending anything
        client.stream(messages=MSG)
    assert len(fault.requests) == 2


def test_usage_reconciles_the_chunk_count(fault: FaultServer) -> None:
    budget = Budget(total_tokens=100)
    fault.reset(Sse(["ab", "cd", "ef"], usage=(5, 9)))  # 3 chunks carrying 9 tokens
    with Client(fault.url, retry=ONCE) as client:
        client.complete(messages=MSG, budget=budget)
    assert budget.used_tokens == 9


def test_usage_on_every_chunk_is_not_counted_twice(fault: FaultServer) -> None:
    budget = Budget(total_tokens=100)
    fault.reset(Sse(["a", "b", "c", "d"], usage_every_chunk=True))
    with Client(fault.url, retry=ONCE) as client:
        done = client.complete(messages=MSG, budget=budget)
    assert budget.used_tokens == 4 and done.usage == Usage(7, 4, 11)


def test_without_usage_the_budget_counts_chunks(fault: FaultServer) -> None:
    budget = Budget(total_tokens=100)
    fault.reset(Sse(["a", "b", "c"], end="drop"))
    with Client(fault.url, retry=ONCE) as client, pytest.raises(StreamError):
        client.complete(messages=MSG, budget=budget)
    assert budget.used_tokens == 3


def test_budget_that_capped_max_tokens_raises_at_a_length_finish(fault: FaultServer) -> None:
    budget = Budget(total_tokens=3)
    fault.reset(Sse(["a", "b", "c"], finish_reason="length"))  # the server honoured max_tokens=3
    with Client(fault.url, retry=ONCE) as client, pytest.raises(BudgetExceeded) as info:
        client.complete(messages=MSG, max_tokens=20, budget=budget)
    assert info.value.partial_text == "abc" and info.value.usage == Usage(7, 3, 10)


@pytest.mark.parametrize(("limit", "kwargs", "text"), [("max_chunks", 5, "xxxxx"), ("max_chars", 7, "xxxxxxx")])
async def test_per_call_limits(fault: FaultServer, limit: str, kwargs: int, text: str) -> None:
    fault.reset(Firehose())
    async with AsyncClient(fault.url, retry=ONCE) as client:
        with pytest.raises(BudgetExceeded) as info:
            limits: dict[str, Any] = {limit: kwargs}
            async for _ in client.stream(messages=MSG, **limits):
                pass
    assert info.value.limit == limit and info.value.partial_text == text


async def test_concurrent_streams_share_one_budget_without_overdrawing(fault: FaultServer) -> None:
    budget = Budget(total_tokens=25)
    fault.reset(*[Sse(["t"] * 10, delay_s=0.01) for _ in range(4)])

    async def one(client: AsyncClient) -> int:
        n = 0
        try:
            async for _ in client.stream(messages=MSG, max_tokens=10):
                n += 1
        except BudgetExceeded:
            pass
        return n

    async with AsyncClient(fault.url, retry=ONCE, budget=budget) as client:
        counts = await asyncio.gather(*(one(client) for _ in range(4)))
    assert sum(counts) == 25 and budget.used_tokens == 25
