"""Every way of stopping early closes the connection at once, so the server can stop generating."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest
from client_fault_server import FaultServer, Firehose, Sse

from inferline.client import AsyncClient, Client

MSG = [{"role": "user", "content": "hi"}]
# How long a test waits for the server to see the client leave. Generous (a busy machine is slow); the
# streams below outlast it or never end by themselves, so only a client that closes can pass.
DEADLINE_S = 30.0


def _disconnect_seen_within(fault: FaultServer, t0: float, within_s: float = DEADLINE_S) -> float:
    deadline = t0 + within_s
    while fault.disconnected_at is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert fault.disconnected_at is not None, f"no disconnect within {within_s}s"
    return fault.disconnected_at - t0


def test_break_closes_the_connection(fault: FaultServer) -> None:
    fault.reset(Firehose())
    with Client(fault.url) as client:
        for i, _ in enumerate(client.stream(messages=MSG)):
            if i == 3:
                break
        t0 = time.monotonic()
        _disconnect_seen_within(fault, t0)


def test_break_closes_even_while_the_stream_object_is_kept(fault: FaultServer) -> None:
    fault.reset(Sse(["a"] * 100, delay_s=0.02))
    with Client(fault.url) as client:
        s = client.stream(messages=MSG)
        for _ in s:
            break
        t0 = time.monotonic()
        _disconnect_seen_within(fault, t0)
        assert s.chunks == 1


def test_close_and_context_exit_close_the_connection(fault: FaultServer) -> None:
    with Client(fault.url) as client:
        for how in ("close", "with"):
            fault.reset(Sse(["a"] * 100, delay_s=0.02))
            if how == "close":
                s = client.stream(messages=MSG)
                it = iter(s)
                next(it)
                s.close()
                s.close()  # twice is fine
            else:
                with client.stream(messages=MSG) as s:
                    next(iter(s))
            _disconnect_seen_within(fault, time.monotonic())


async def test_async_break_and_aclose_close_the_connection(fault: FaultServer) -> None:
    async with AsyncClient(fault.url) as client:
        fault.reset(Firehose())
        async with client.stream(messages=MSG) as s:
            async for _ in s:
                break
        assert await asyncio.to_thread(fault.wait_disconnected, DEADLINE_S) is not None

        fault.reset(Firehose())
        s = client.stream(messages=MSG)
        async for _ in s:
            break
        del s
        gc.collect()  # a bare `break` relies on the event loop's async-generator finalizer
        assert await asyncio.to_thread(fault.wait_disconnected, DEADLINE_S) is not None


async def test_task_cancellation_closes_the_connection(fault: FaultServer) -> None:
    fault.reset(Sse(["a"] * 1000, delay_s=0.01))
    got = asyncio.Event()

    async def consume(client: AsyncClient) -> None:
        async for _ in client.stream(messages=MSG):
            got.set()

    async with AsyncClient(fault.url) as client:
        task = asyncio.create_task(consume(client))
        await asyncio.wait_for(got.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(fault.wait_disconnected, DEADLINE_S) is not None


def test_close_from_another_thread_ends_the_loop_quietly(fault: FaultServer) -> None:
    fault.reset(Sse(["a"], end="stall"))  # the reader blocks in recv() after the first chunk
    with Client(fault.url) as client:
        s = client.stream(messages=MSG)
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(s))
        reader.start()
        deadline = time.monotonic() + DEADLINE_S
        while s.chunks < 1:  # the reader has the first delta: it is now blocked in recv()
            assert time.monotonic() < deadline, "the first chunk never arrived"
            time.sleep(0.01)
        s.close()
        reader.join(DEADLINE_S)
        assert not reader.is_alive() and seen == ["a"]
    assert fault.wait_disconnected(DEADLINE_S) is not None
    assert len(fault.requests) == 1  # no retry after close


async def test_aclose_from_another_task_ends_the_loop_quietly(fault: FaultServer) -> None:
    fault.reset(Sse(["a"], end="stall"))
    async with AsyncClient(fault.url) as client:
        s = client.stream(messages=MSG)
        seen: list[str] = []
        first = asyncio.Event()

        async def read() -> None:
            async for delta in s:
                seen.append(delta)
                first.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(first.wait(), DEADLINE_S)  # the reader has the first delta: now waiting for more
        await s.aclose()
        await asyncio.wait_for(task, DEADLINE_S)
    assert seen == ["a"] and len(fault.requests) == 1
    assert await asyncio.to_thread(fault.wait_disconnected, DEADLINE_S) is not None


def test_a_finished_stream_reuses_the_connection_and_a_cut_one_does_not(fault: FaultServer) -> None:
    with Client(fault.url) as client:
        client.complete(messages=MSG)
        client.complete(messages=MSG)
        for _ in client.stream(messages=MSG):
            break
        client.complete(messages=MSG)
    peers = [r.peer for r in fault.requests]
    assert peers[0] == peers[1] == peers[2]  # [DONE], then the body's end read: back to the pool
    assert peers[3] != peers[2]  # closed mid-stream: that connection is gone


async def test_async_finished_stream_reuses_the_connection(fault: FaultServer) -> None:
    async with AsyncClient(fault.url) as client:
        for _ in range(3):
            await client.complete(messages=MSG)
    assert len({r.peer for r in fault.requests}) == 1
