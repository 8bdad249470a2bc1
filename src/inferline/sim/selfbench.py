"""Measure what one simulator process can serve: `python -m inferline.sim.selfbench [--concurrency N ...]`.

Starts `python -m inferline.sim` (profile instant) as a child process, drives it with a minimal
keep-alive HTTP client (raw asyncio: the client must cost less per chunk than the server it measures),
and reports streamed requests/s, chunks/s and the simulator's own CPU time per chunk and per request,
read from /proc. CPU per chunk is the number that matters: 1 / it is the chunk rate one core sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

import orjson

_END = b"\r\n0\r\n\r\n"


@dataclass(slots=True)
class Result:
    requests: int
    chunks: int
    wall_s: float
    sim_cpu_s: float
    client_cpu_s: float

    def line(self, concurrency: int, max_tokens: int) -> str:
        per_chunk_us = self.sim_cpu_s / self.chunks * 1e6 if self.chunks else float("nan")
        per_req_us = self.sim_cpu_s / self.requests * 1e6 if self.requests else float("nan")
        return (
            f"concurrency {concurrency:4d}  max_tokens {max_tokens:4d}  "
            f"{self.requests / self.wall_s:8.0f} req/s  {self.chunks / self.wall_s:9.0f} chunks/s  "
            f"CPU sim {self.sim_cpu_s / self.wall_s * 100:3.0f}% client {self.client_cpu_s / self.wall_s * 100:3.0f}%  "
            f"{per_chunk_us:6.2f} us/chunk  {per_req_us:7.1f} us/request"
        )


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Client(asyncio.Protocol):
    """One closed-loop keep-alive connection: send, read to the end of the chunked body, repeat."""

    def __init__(self, request: bytes, stop_at: float, counts: list[int], done: asyncio.Future[None]) -> None:
        self.request, self.stop_at, self.counts, self.done = request, stop_at, counts, done
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        self.chunks = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.chunks += data.count(b'"delta":{"content":" ')
        self.tail = (self.tail + data)[-len(_END) :]
        if self.tail != _END:
            return
        self.counts[0] += 1
        self.counts[1] += self.chunks
        self.chunks, self.tail = 0, b""
        assert self.transport is not None
        if time.monotonic() < self.stop_at:
            self.transport.write(self.request)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _worker(port: int, request: bytes, stop_at: float, counts: list[int]) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    await loop.create_connection(lambda: _Client(request, stop_at, counts, done), "127.0.0.1", port)
    await done


async def _measure(port: int, pid: int, concurrency: int, max_tokens: int, duration_s: float) -> Result:
    body = orjson.dumps(
        {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
            "stream": True,
        }
    )
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%b" % (len(body), body)
    )
    counts = [0, 0]
    me = os.getpid()
    cpu0, mine0, t0 = _cpu_s(pid), _cpu_s(me), time.monotonic()
    stop_at = t0 + duration_s
    await asyncio.gather(*(_worker(port, request, stop_at, counts) for _ in range(concurrency)))
    wall, cpu, mine = time.monotonic() - t0, _cpu_s(pid) - cpu0, _cpu_s(me) - mine0
    return Result(counts[0], counts[1], wall, cpu, mine)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    args = parser.parse_args(argv)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inferline.sim",
            "--profile",
            "instant",
            "--port",
            "0",
            "--max-num-seqs",
            "4096",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r":(\d+)/v1", proc.stdout.readline())
        assert match, "simulator did not start"
        port = int(match.group(1))
        print(f"simulator pid {proc.pid} on port {port}; client: raw asyncio in pid {os.getpid()}", flush=True)
        for max_tokens in args.max_tokens:
            for concurrency in args.concurrency:
                res = _run(_measure(port, proc.pid, concurrency, max_tokens, args.duration))
                print(res.line(concurrency, max_tokens), flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


def _run(coro: Coroutine[Any, Any, Result]) -> Result:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: Result = uvloop.run(coro)
    return result


if __name__ == "__main__":
    main()
