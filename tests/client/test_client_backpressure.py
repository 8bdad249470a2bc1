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
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_fault_server import FaultServer, Firehose

from inferline.client import AsyncClient, Client

MSG = [{"role": "user", "content": "hi"}]
DEADLINE_S = 30.0


def _written_once_stalled(fault: FaultServer, quiet_s: float = 0.5) -> int:
    """The server's byte count once it has stopped growing for quiet_s (it filled the kernel buffers).

    Waiting for that event, not a fixed pause, keeps the test right on a loaded machine, where filling
    the buffers can take longer. An unthrottled server never stops: the deadline fails the test."""
    deadline = time.monotonic() + DEADLINE_S
    last, since = fault.bytes_written, time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"the server kept writing for {DEADLINE_S:.0f}s: no backpressure"
        time.sleep(0.05)
        now = fault.bytes_written
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_a_paused_consumer_stalls_the_server(fault: FaultServer) -> None:
    fault.reset(Firehose())  # endless
    with Client(fault.url) as client, client.stream(messages=MSG, keep_text=False) as s:
        it = iter(s)
        for _ in range(10):
            next(it)
        written_1 = _written_once_stalled(fault)
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
                written_1 = await asyncio.to_thread(_written_once_stalled, fault)
                await asyncio.sleep(0.5)
                written_2 = fault.bytes_written
            if n == 20:
                break
    assert 0 < written_1 < 16 * 1024 * 1024
    assert written_2 - written_1 < 64 * 1024


@pytest.fixture(scope="module")
def firehose_url() -> Iterator[str]:
    """A firehose server in a child process (the fault server below is in-process)."""
    script = Path(__file__).with_name("client_fault_server.py")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)  # a clean stop takes a moment; much longer on a loaded machine
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


# Run in a child process: tracemalloc counts every thread, and this process also hosts the fault server.
_MEASURE = """
import sys, tracemalloc
from inferline.client import Client
url, n, keep_text = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
with Client(url) as client:
    s = client.stream(messages=[{"role": "user", "content": "hi"}], max_tokens=n, keep_text=keep_text)
    tracemalloc.start()
    it = iter(s)
    next(it)  # connection set up, first read done
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    for _ in it:
        pass
    peak = tracemalloc.get_traced_memory()[1] - base
assert s.chunks == n and s.finish_reason == "length", (s.chunks, s.finish_reason)
print(peak)
"""


def _peak_bytes(url: str, n: int, keep_text: bool = False) -> int:
    """Peak traced memory of a client streaming n chunks (after the first)."""
    args = [sys.executable, "-c", _MEASURE, url, str(n), "1" if keep_text else "0"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip())


def test_memory_is_flat_however_long_the_generation(firehose_url: str) -> None:
    # httpcore's recv() asks for up to 64 KiB and h11 buffers what it got: one or two such transient
    # buffers are the whole peak (~70 or ~130 KiB, depending on how full the socket was), for any n.
    for n in (2_000, 20_000):
        assert _peak_bytes(firehose_url, n) < 192 * 1024, n
    # Control: keeping the text (the default) grows with the answer, and this measurement sees it.
    assert _peak_bytes(firehose_url, 20_000, keep_text=True) > 512 * 1024
