"""The four deadlines fire when they should, as their own types, and a slow consumer trips none of them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest
from client_fault_server import FaultServer, Sse

from inferline.client import (
    AsyncClient,
    Client,
    ConnectTimeout,
    FirstTokenTimeout,
    IdleTimeout,
    Retry,
    Timeouts,
    TotalTimeout,
)

ONCE = Retry(max_attempts=1)
MSG = [{"role": "user", "content": "hi"}]
# The fault server's delays are far longer than the client's deadlines (0.3-0.5 s), and the bound on how
# long a call may take is half of that delay: only the deadline firing can end the call in time, however
# busy the machine is. (The lower bounds prove the deadline did not fire early.)
SERVER_DELAY_S = 30.0
BOUND_S = SERVER_DELAY_S / 2


@pytest.mark.parametrize("where", ["before_headers", "after_headers"])
def test_first_token_timeout(fault: FaultServer, where: str) -> None:
    slow = (
        Sse(["late"], headers_delay_s=SERVER_DELAY_S)
        if where == "before_headers"
        else Sse(["late"], first_delay_s=SERVER_DELAY_S)
    )
    fault.reset(slow)
    t0 = time.monotonic()
    with (
        Client(fault.url, retry=ONCE, timeouts=Timeouts(first_token_s=0.3)) as client,
        pytest.raises(FirstTokenTimeout) as info,
    ):
        client.complete(messages=MSG)
    assert 0.25 <= time.monotonic() - t0 < BOUND_S
    assert info.value.timeout_s == 0.3


async def test_first_token_timeout_async_then_retry_succeeds(fault: FaultServer) -> None:
    fault.reset(Sse(["late"], first_delay_s=SERVER_DELAY_S), Sse(["on", " time"]))
    retry = Retry(max_attempts=2, backoff_base_s=0.01)
    # 3 s: the retry's first token must arrive within the same deadline, also on a loaded machine.
    async with AsyncClient(fault.url, retry=retry, timeouts=Timeouts(first_token_s=3.0)) as client:
        done = await client.complete(messages=MSG)
    assert done.text == "on time" and done.attempts == 2


def test_idle_timeout_mid_stream_carries_the_partial_text(fault: FaultServer) -> None:
    fault.reset(Sse(["a", "b"], end="stall"))
    seen: list[str] = []
    t0 = time.monotonic()
    with (
        Client(fault.url, retry=ONCE, timeouts=Timeouts(idle_s=0.3)) as client,
        pytest.raises(IdleTimeout) as info,
    ):
        for delta in client.stream(messages=MSG):
            seen.append(delta)
    assert seen == ["a", "b"] and info.value.partial_text == "ab"
    assert 0.25 <= time.monotonic() - t0 < BOUND_S


async def test_idle_timeout_async(fault: FaultServer) -> None:
    fault.reset(Sse(["a"], end="stall"))
    async with AsyncClient(fault.url, retry=ONCE, timeouts=Timeouts(idle_s=0.3)) as client:
        with pytest.raises(IdleTimeout) as info:
            await client.complete(messages=MSG)
    assert info.value.partial_text == "a"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_total_timeout_bounds_the_whole_call(fault: FaultServer, mode: str) -> None:
    fault.reset(Sse(["x"] * int(SERVER_DELAY_S / 0.05), delay_s=0.05))  # 30 s of chunks
    timeouts = Timeouts(total_s=3.0, idle_s=10)  # long enough for chunks to arrive first on a loaded machine
    t0 = time.monotonic()
    with pytest.raises(TotalTimeout) as info:
        if mode == "sync":
            with Client(fault.url, retry=ONCE, timeouts=timeouts) as client:
                client.complete(messages=MSG)
        else:

            async def run() -> None:
                async with AsyncClient(fault.url, retry=ONCE, timeouts=timeouts) as client:
                    await client.complete(messages=MSG)

            asyncio.run(run())
    assert 2.95 <= time.monotonic() - t0 < BOUND_S
    assert info.value.partial_text.startswith("x")


def test_a_slow_consumer_does_not_trip_the_idle_timeout(fault: FaultServer) -> None:
    fault.reset(Sse(["a", "b", "c", "d"]))
    with (
        Client(fault.url, retry=ONCE, timeouts=Timeouts(idle_s=0.1)) as client,
        client.stream(messages=MSG) as s,
    ):
        for _ in s:
            time.sleep(0.25)  # longer than idle_s, but the bytes are already waiting in the socket
    assert s.text == "abcd" and s.finish_reason == "stop"


def test_connect_timeout() -> None:
    # A listener whose accept queue is full: Linux drops further SYNs, so connect() hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        t0 = time.monotonic()
        timeouts = Timeouts(connect_s=0.3)
        with (
            Client(f"http://127.0.0.1:{port}/v1", retry=ONCE, timeouts=timeouts) as client,
            pytest.raises(ConnectTimeout),
        ):
            client.complete(messages=MSG)
        assert time.monotonic() - t0 < BOUND_S  # without the deadline, connect() would hang for good
    finally:
        for sock in [*fillers, listener]:
            sock.close()
