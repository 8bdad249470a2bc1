"""Backpressure: the client reads only when the consumer asks, so a paused consumer stalls the server,
and memory does not grow with the length of the generation.

The fault server's firehose writes chunks as fast as its socket accepts them and counts the bytes
it managed to write; aiohttp's write() waits whenever the transport's buffer is full.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_fault_server import FaultServer, Firehose

from inferline.client import AsyncClient, Client

MSG = [{"role": "user", "content": "hi"}]


def test_a_paused_consumer_stalls_the_server(fault: FaultServer) -> None:
    fault.reset(Firehose())  # endless
    with Client(fault.url) as client, client.stream(messages=MSG, keep_text=False) as s:
        it = iter(s)
        for _ in range(10):
            next(it)
        time.sleep(0.5)
        written_1 = fault.bytes_written
        time.sleep(0.5)
        written_2 = fault.bytes_written
        for _ in range(10):
            next(it)
    # An unthrottled server writes ~1 GB/s on loopback; here it stopped after filling the kernel
    # buffers between it and the paused client, and wrote nothing more during the second pause.
    assert 0 < written_1 < 16 * 1024 * 1024
    assert written_2 - written_1 < 64 * 1024
    assert s.chunks == 20


async def test_a_paused_async_consumer_stalls_the_server(fault: FaultServer) -> None:
    fault.reset(Firehose())
    async with AsyncClient(fault.url) as client, client.stream(messages=MSG, keep_text=False) as s:
        n = 0
        async for _ in s:
            n += 1
            if n == 10:
                await asyncio.sleep(0.5)
                written_1 = fault.bytes_written
                await asyncio.sleep(0.5)
                written_2 = fault.bytes_written
            if n == 20:
                break
    assert 0 < written_1 < 16 * 1024 * 1024
    assert written_2 - written_1 < 64 * 1024


@pytest.fixture(scope="module")
def firehose_url() -> Iterator[str]:
    """A firehose server in a child process, so tracemalloc here counts the client's memory only."""
    script = Path(__file__).with_name("client_fault_server.py")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _peak_bytes(url: str, n: int) -> int:
    """Peak traced memory while streaming n chunks (after the first), keep_text=False."""
    with Client(url) as client:
        s = client.stream(messages=MSG, max_tokens=n, keep_text=False)
        tracemalloc.start()
        try:
            it = iter(s)
            next(it)  # connection set up, first read done
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for _ in it:
                pass
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert s.chunks == n and s.finish_reason == "length"
    return peak


def test_memory_is_flat_however_long_the_generation(firehose_url: str) -> None:
    _peak_bytes(firehose_url, 10)  # one-time allocations (lazy imports, caches) out of the way
    short, long = _peak_bytes(firehose_url, 2_000), _peak_bytes(firehose_url, 20_000)
    # httpcore's recv() asks for up to 64 KiB at a time: that transient buffer is most of the peak.
    assert short < 128 * 1024 and long < 128 * 1024
    assert long - short < 8 * 1024, (short, long)
