"""inferline's engine client against a scripted HTTP server on loopback: keep-alive reuse, the one resend
on a connection the engine closed while idle, abort on close, timeouts, backpressure, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from inferline.backends.base import BackendConnectError
from inferline.net.client import HttpPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Script"], Awaitable[None]]


class Script:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests = 0
        self.closed_by_client = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await self.handler(reader, writer, self)
        writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def ok(body: bytes, close: bool = False) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        b"connection: close\r\n" if close else b"",
        body,
    )


@contextlib.asynccontextmanager
async def engine(handler: Handler, **pool_kw: float) -> AsyncIterator[tuple[HttpPool, Script]]:
    script = Script(handler)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kw = {"connect_timeout_s": 2.0, "read_timeout_s": 5.0, **pool_kw}
    pool = HttpPool(f"http://127.0.0.1:{port}", **kw)
    try:
        yield pool, script
    finally:
        await pool.close()
        server.close()


async def keepalive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
    while True:
        req = await read_request(reader)
        s.requests += 1
        writer.write(ok(b"hello %d" % s.requests + (b" auth" if b"authorization: Bearer k" in req else b"")))


async def test_connections_are_reused() -> None:
    async with engine(keepalive) as (pool, script):
        for i in range(3):
            resp = await pool.request("POST", "/v1/x", b"{}")
            assert resp.status == 200
            assert await resp.read(1000) == b"hello %d" % (i + 1)
            resp.close()
        assert script.connections == 1


async def test_headers_and_prefix_are_sent() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        req = await read_request(reader)
        writer.write(ok(req))

    script = Script(echo)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = HttpPool(f"http://127.0.0.1:{port}/prefix/", connect_timeout_s=2, read_timeout_s=5, headers={"x-k": "v"})
    resp = await pool.request("POST", "/v1/chat", b'{"a":1}')
    req = await resp.read(10000)
    await pool.close()
    server.close()
    assert req.startswith(b"POST /prefix/v1/chat HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{port}\r\n".encode() in req and b"x-k: v\r\n" in req
    assert b"content-type: application/json\r\n" in req and req.endswith(b'\r\n\r\n{"a":1}')


async def test_a_connection_the_engine_closed_while_idle_is_resent_once() -> None:
    async def close_after_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)
        s.requests += 1
        writer.write(ok(b"one"))  # keep-alive answer... then the engine drops the connection
        await writer.drain()
        await asyncio.sleep(0.05)

    async with engine(close_after_one) as (pool, script):
        r1 = await pool.request("POST", "/", b"{}")
        assert await r1.read(100) == b"one"
        r1.close()
        await asyncio.sleep(0.2)  # the engine closed it; we may not have noticed yet
        r2 = await pool.request("POST", "/", b"{}")
        assert await r2.read(100) == b"one"
        r2.close()
        assert script.requests == 2 and script.connections == 2


async def test_idle_connections_are_dropped_after_keepalive_s() -> None:
    async with engine(keepalive, keepalive_s=0.2) as (pool, script):
        (await pool.request("GET", "/")).close()
        await asyncio.sleep(0.5)
        resp = await pool.request("GET", "/")
        await resp.read(100)
        resp.close()
        assert script.connections == 2


async def test_closing_before_the_end_closes_the_connection() -> None:
    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        assert await reader.read() == b""  # the client went away: an engine aborts the request here
        s.closed_by_client.set()

    async with engine(stream) as (pool, script):
        resp = await pool.request("POST", "/", b"{}")
        assert await resp.chunks() == b"hello"
        resp.close()
        await asyncio.wait_for(script.closed_by_client.wait(), 5)


async def test_chunked_stream_and_finish_returns_the_connection() -> None:
    async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(3):
                writer.write(b"%x\r\ndata: %d\n\n\r\n" % (len(b"data: %d\n\n" % i), i))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")

    async with engine(sse) as (pool, script):
        for _ in range(2):
            resp = await pool.request("POST", "/", b"{}")
            got = b""
            while chunk := await resp.chunks():
                got += chunk
            assert got == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
            await resp.finish()
        assert script.connections == 1


async def test_silence_past_read_timeout_is_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with engine(silent, read_timeout_s=0.3) as (pool, _):
        with pytest.raises(TimeoutError):
            await pool.request("POST", "/", b"{}")


async def test_refused_and_malformed_are_connect_errors() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    pool = HttpPool(f"http://127.0.0.1:{port}", connect_timeout_s=2, read_timeout_s=5)
    with pytest.raises(BackendConnectError):
        await pool.request("GET", "/")
    await pool.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    async with engine(garbage) as (pool2, _):
        with pytest.raises(BackendConnectError):
            await pool2.request("GET", "/")


async def test_mid_body_close_is_a_connect_error() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")

    async with engine(cut) as (pool, _):
        resp = await pool.request("GET", "/")
        with pytest.raises(BackendConnectError):
            await resp.read(1000)


async def test_unread_body_pauses_the_connection() -> None:
    """Backpressure: the engine's writes stall while the relay reads nothing (bounded buffering)."""
    progress = {"sent": 0}

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"x" * 16384
        while progress["sent"] < 64 * 1024 * 1024:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            progress["sent"] += len(chunk)

    async with engine(firehose) as (pool, _):
        resp = await pool.request("GET", "/")
        await asyncio.sleep(0.5)
        stuck = progress["sent"]
        await asyncio.sleep(0.5)
        assert progress["sent"] == stuck < 16 * 1024 * 1024
        assert len(await resp.chunks()) > 0
        resp.close()


async def test_a_request_into_a_connection_closing_under_it_is_resent_on_a_fresh_one() -> None:
    """The race the resend exists for: the request is written, then the engine's close arrives (no answer)."""

    async def drop_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)
        s.requests += 1
        writer.write(ok(b"first"))
        await read_request(reader)  # the second request on this connection: closed without an answer

    async with engine(drop_second) as (pool, script):
        r1 = await pool.request("POST", "/", b"{}")
        assert await r1.read(100) == b"first"
        r1.close()
        r2 = await pool.request("POST", "/", b"{}")
        assert await r2.read(100) == b"first"  # answered on a second connection
        r2.close()
        assert script.connections == 2


async def test_a_fresh_connection_closed_without_answer_is_an_error_not_a_loop() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)

    async with engine(drop) as (pool, script):
        with pytest.raises(BackendConnectError):
            await pool.request("POST", "/", b"{}")
        assert script.connections == 1


async def test_a_body_that_ends_with_the_connection_is_complete() -> None:
    async def http10(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")

    async with engine(http10) as (pool, script):
        resp = await pool.request("GET", "/health")
        assert await resp.read(1000) == b"until the end"
        resp.close()
        (await pool.request("GET", "/health")).close()
        assert script.connections == 2  # not kept alive
