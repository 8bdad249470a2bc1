"""Against a real engine (llama.cpp serving SmolLM2): streams, backpressure, budgets and cancellation.

Assertions are about structure, counts and finish reasons, never generated text: the model is
small and sampling is nondeterministic. `ignore_eos` makes the engine generate exactly max_tokens
(llama.cpp and vLLM both accept it) so that "still generating" is something the test controls.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from inferline.client import AsyncClient, Budget, BudgetExceeded, Client, Timeouts

MSG = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
LONG: dict[str, Any] = {"ignore_eos": True, "temperature": 0.7}
# The engine shares 2 CPU cores with everything else the suite runs: allow slow first tokens.
PATIENT = Timeouts(first_token_s=60, idle_s=60)


# How long the tests wait for an event (a slot freed) before failing: generous, because the engine shares
# two cores with the rest of the suite (and, under scripts/stress-tests.sh, with CPU burners). What proves a
# slot was freed by cancelling, not by finishing, is the engine's token count, never this deadline.
IDLE_DEADLINE_S = 60.0
_PREDICTED = re.compile(r"^llamacpp:tokens_predicted_total (\S+)$", re.MULTILINE)


def _busy_slots(url: str) -> int:
    slots = httpx.get(url + "/slots", timeout=10).json()
    return sum(1 for s in slots if s["is_processing"])


def _wait_idle(url: str, deadline_s: float = IDLE_DEADLINE_S) -> None:
    """Poll the engine's slots until none is processing (asserts it happens within deadline_s)."""
    t0 = time.monotonic()
    while busy := _busy_slots(url):
        assert time.monotonic() - t0 < deadline_s, f"{busy} slot(s) still processing after {deadline_s:.0f}s"
        time.sleep(0.02)


def _tokens_predicted(url: str) -> int:
    """The engine's count of generated tokens, over finished and cancelled requests (llama.cpp /metrics)."""
    m = _PREDICTED.search(httpx.get(url + "/metrics", timeout=10).text)
    assert m is not None, "llamacpp:tokens_predicted_total missing from the engine's /metrics"
    return int(float(m.group(1)))


def _assert_freed_early(url: str, predicted_before: int, max_tokens: int) -> None:
    """The engine went idle having generated fewer tokens than it was asked for: the slot was freed by
    the client going away, not by the generation running to max_tokens (ignore_eos: it cannot stop early)."""
    _wait_idle(url)
    generated = _tokens_predicted(url) - predicted_before
    assert generated < max_tokens, f"the engine generated {generated} tokens: the request ran to max_tokens"


def _wait_busy(url: str) -> None:
    deadline = time.monotonic() + IDLE_DEADLINE_S
    while not _busy_slots(url):
        assert time.monotonic() < deadline, "the engine never started generating"
        time.sleep(0.02)


def _tcp_queues(local_port: int, remote_port: int) -> tuple[int, int] | None:
    """(bytes queued to send, bytes received but unread) for the loopback TCP socket local->remote."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
            if (local, remote) == (local_port, remote_port):
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


@pytest.fixture
def client(engine_url: str) -> Iterator[Client]:
    with Client(engine_url + "/v1", model="smollm2", timeouts=PATIENT) as c:
        yield c
    _wait_idle(engine_url)


def test_chat_and_completions_streams_end_with_usage_and_finish_reason(client: Client) -> None:
    with client.stream(messages=MSG, max_tokens=12, **LONG) as s:
        deltas = list(s)
    assert 1 <= len(deltas) == s.chunks <= 12
    assert s.finish_reason == "length"
    assert s.usage is not None and s.usage.completion_tokens == 12 and s.usage.prompt_tokens > 0
    assert s.text == "".join(deltas)
    assert s.ttft_s is not None and s.ttft_s > 0
    assert s.backend is None and s.model is None  # an engine sends no x-inferline-* headers
    done = client.complete(prompt="The lighthouse keeper", max_tokens=8, **LONG)
    assert done.finish_reason == "length" and done.usage is not None and done.usage.completion_tokens == 8
    # 2 when the engine had closed the pooled keep-alive connection: a retry before the first token is correct.
    assert done.attempts in (1, 2)
    # Timing is per socket read: if every token arrived in one read there is no rate to report.
    assert done.tokens_per_s is None or done.tokens_per_s > 0


async def test_async_complete(engine_url: str) -> None:
    async with AsyncClient(engine_url + "/v1", timeouts=PATIENT) as client:
        done = await client.complete(messages=MSG, max_tokens=8, **LONG)
    assert done.finish_reason == "length" and done.usage is not None
    assert done.usage.completion_tokens == 8 and done.text


def test_slow_consumer_leaves_bytes_in_the_kernel_and_keeps_memory_flat(engine_url: str) -> None:
    """Not iterating means not reading: the engine's output waits in TCP buffers, not in our process.

    The smallest receive buffer the kernel allows (~2.3 KiB) makes TCP flow control visible with a
    short answer: while the consumer pauses, the client reads nothing, its socket's receive queue
    fills, and the engine's socket holds bytes it cannot send (its writes are throttled by our
    window). Then a consumer that sleeps between chunks reads in small steps, with flat memory.
    """
    n = 24  # ~5.5 KB of chunks: more than the ~2.3 KB receive buffer, so the window closes
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)])
    engine_port = int(engine_url.rsplit(":", 1)[1])
    with Client(engine_url + "/v1", timeouts=PATIENT, transport=transport) as client:
        s = client.stream(messages=MSG, max_tokens=n, **LONG)
        it = iter(s)
        next(it)
        resp = s._response
        assert resp is not None
        sock = resp.extensions["network_stream"].get_extra_info("socket")
        client_port = sock.getsockname()[1]
        read_after_first = resp.num_bytes_downloaded

        # Pause, without iterating, until the engine's socket holds bytes it cannot send to us.
        deadline = time.monotonic() + 60
        while True:
            server_q = _tcp_queues(engine_port, client_port)
            client_q = _tcp_queues(client_port, engine_port)
            if server_q is not None and server_q[0] > 0:
                break
            assert time.monotonic() < deadline, "TCP flow control never engaged"
            time.sleep(0.02)
        assert resp.num_bytes_downloaded == read_after_first  # nothing read while we did not ask
        assert client_q is not None and client_q[1] > 0  # the answer waits in our kernel buffer...
        assert server_q[0] > 0  # ...and in the engine's: its writes are throttled by our window

        # Now a consumer that sleeps between chunks: bytes come in small steps, memory stays flat.
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            steps: list[int] = []
            for _ in it:
                steps.append(resp.num_bytes_downloaded)
                time.sleep(0.01)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert s.finish_reason == "length" and s.usage is not None and s.usage.completion_tokens == n
    total = resp.num_bytes_downloaded
    assert steps[len(steps) // 2] < 0.75 * total  # half-way through, most bytes were still unread
    # httpcore's recv() asks for up to 64 KiB at a time: that transient buffer is most of the peak.
    assert peak < 128 * 1024, f"peak {peak} B while slowly consuming {total} B"


def test_break_frees_the_engine_slot(client: Client, engine_url: str) -> None:
    before = _tokens_predicted(engine_url)
    for i, _ in enumerate(client.stream(messages=MSG, max_tokens=400, **LONG)):
        if i == 2:
            break
    _assert_freed_early(engine_url, before, 400)


def test_token_budget_stops_exactly_at_the_budget_and_frees_the_slot(client: Client, engine_url: str) -> None:
    budget = Budget(total_tokens=10)
    before = _tokens_predicted(engine_url)
    with pytest.raises(BudgetExceeded) as info:
        for _ in client.stream(messages=MSG, max_tokens=300, budget=budget, **LONG):
            pass
    exc = info.value
    assert exc.limit == "budget" and exc.usage is not None
    assert exc.usage.completion_tokens == 10 and budget.used_tokens == 10 and budget.remaining_tokens == 0
    assert exc.partial_text
    _assert_freed_early(engine_url, before, 300)
    with pytest.raises(BudgetExceeded):
        client.stream(messages=MSG, budget=budget)


async def test_concurrent_streams_stop_mid_stream_at_a_shared_budget(engine_url: str) -> None:
    budget = Budget(total_tokens=16)

    async def one(client: AsyncClient) -> int:
        n = 0
        try:
            async for _ in client.stream(messages=MSG, max_tokens=64, **LONG):
                n += 1
        except BudgetExceeded:
            pass
        return n

    await asyncio.to_thread(_wait_idle, engine_url)
    before = await asyncio.to_thread(_tokens_predicted, engine_url)
    async with AsyncClient(engine_url + "/v1", timeouts=PATIENT, budget=budget) as client:
        counts = await asyncio.gather(one(client), one(client))
    assert sum(counts) <= 16 and budget.used_tokens <= 16
    await asyncio.to_thread(_assert_freed_early, engine_url, before, 2 * 64)


async def test_task_cancellation_closes_the_connection_and_frees_the_slot(engine_url: str) -> None:
    started = asyncio.Event()

    async def consume(client: AsyncClient) -> None:
        async for _ in client.stream(messages=MSG, max_tokens=400, **LONG):
            started.set()

    await asyncio.to_thread(_wait_idle, engine_url)
    before = await asyncio.to_thread(_tokens_predicted, engine_url)
    async with AsyncClient(engine_url + "/v1", timeouts=PATIENT) as client:
        task = asyncio.create_task(consume(client))
        await asyncio.wait_for(started.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Still inside the client: the freed slot must come from closing the connection, not the pool's close.
        await asyncio.to_thread(_assert_freed_early, engine_url, before, 400)
