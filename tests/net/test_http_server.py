"""inferline's HTTP/1.1 server with a small ASGI app, over real loopback sockets: the ASGI contract the
gateway relies on (framing, keep-alive, backpressure, disconnect) and the bounds on hostile clients."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from inferline.net.server import HttpServer, Limits, bind_socket
from inferline.types import Receive, Scope, Send

EVENTS: dict[str, Any] = {}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                EVENTS["started"] = True
                await send({"type": "lifespan.startup.complete"})
            else:
                EVENTS["stopped"] = True
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        out = orjson.dumps({"method": scope["method"], "len": len(body), "q": scope["query_string"].decode()})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"part%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/firehose":  # writes until the client stops reading: send() must block
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent = 0
        EVENTS["firehose_sent"] = 0
        chunk = b"x" * 16384
        while sent < 64 * 1024 * 1024:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
            EVENTS["firehose_sent"] = sent
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/wait-disconnect":
        await receive()  # the body
        EVENTS["waiting"] = True
        m = await receive()  # blocks until the client leaves
        EVENTS["disconnect"] = m["type"]
    elif path == "/on-disconnect":
        await receive()
        gone = asyncio.Event()
        scope["extensions"]["inferline.on_disconnect"](gone.set)
        EVENTS["waiting"] = True
        await gone.wait()
        EVENTS["callback"] = True
    elif path == "/inject":  # a header value that would smuggle a header of its own
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nx-evil: 1")]})
        await send({"type": "http.response.body", "body": b"body"})
    elif path == "/own-framing":  # the app frames the body itself and asks to close
        headers = [(b"Content-Length", b"2"), (b"Connection", b"close")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/boom":
        raise RuntimeError("bug")
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"nope"})


@contextlib.asynccontextmanager
async def serving(limits: Limits | None = None, send_buffer: int = 0) -> AsyncIterator[tuple[HttpServer, int]]:
    EVENTS.clear()
    server = HttpServer(app, limits)
    await server.startup()
    sock = bind_socket("127.0.0.1", 0, send_buffer_bytes=send_buffer)
    await server.serve(sock)
    try:
        yield server, sock.getsockname()[1]
    finally:
        server.begin_drain()
        await server.wait_drained(2)
        await server.close()
        await server.shutdown()


async def raw(port: int, data: bytes, read_until_close: bool = True, wait_s: float = 10) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        out = await asyncio.wait_for(reader.read(), wait_s) if read_until_close else b""
    finally:
        writer.close()
    return out


async def test_lifespan_keepalive_and_framing() -> None:
    async with serving() as (_, port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        assert EVENTS["started"]
        r1 = await c.post("/echo?a=1", content=b"x" * 100_000)
        assert r1.json() == {"method": "POST", "len": 100_000, "q": "a=1"}
        assert r1.headers["content-length"] == str(len(r1.content))
        r2 = await c.get("/stream")  # same connection (keep-alive), chunked
        assert r2.text == "part0\npart1\npart2\n"
        assert r2.headers["transfer-encoding"] == "chunked"

        async def parts() -> AsyncIterator[bytes]:
            for _ in range(1000):
                yield b"ab"

        r3 = await c.post("/echo", content=parts())  # a chunked request body
        assert r3.json()["len"] == 2000
    assert EVENTS["stopped"]


async def test_head_and_first_body_go_out_in_one_write() -> None:
    async with serving() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        first = await reader.read(65536)  # one segment: the head and part0 together
        writer.close()
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"part0" in first


async def test_pipelined_requests_answered_in_order() -> None:
    async with serving() as (_, port):
        req = b"POST /echo?n=%d HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"
        out = await raw(port, req % 1 + req % 2 + b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert out.index(b'"q":"n=1"') < out.index(b'"q":"n=2"') < out.index(b"part0")


async def test_expect_100_continue() -> None:
    async with serving() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"abc")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()


async def test_app_error_is_a_500_in_openai_shape() -> None:
    async with serving() as (_, port):
        out = await raw(port, b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500")
    assert orjson.loads(body)["error"]["type"] == "server_error"


async def test_a_header_with_a_line_break_never_reaches_the_client() -> None:
    async with serving() as (_, port):
        out = await raw(port, b"GET /inject HTTP/1.1\r\nhost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500 ")
    assert b"x-evil" not in out and b"body" not in out


async def test_the_apps_own_framing_headers_are_kept_not_doubled() -> None:
    async with serving() as (_, port):
        out = await raw(port, b"GET /own-framing HTTP/1.1\r\nhost: x\r\n\r\n")  # connection: close ends it
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"ok"
    assert head.lower().count(b"content-length") == 1 and b"transfer-encoding" not in head.lower()


async def test_malformed_request_is_a_400() -> None:
    async with serving() as (_, port):
        out = await raw(port, b"GET / HTTP/1.1\r\nbad header line\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert orjson.loads(out.partition(b"\r\n\r\n")[2])["error"]["code"] == "bad_request"


async def test_send_blocks_when_the_client_stops_reading() -> None:
    """Backpressure: a client that reads nothing holds the app at the bounded buffers, not 64 MiB later."""
    async with serving(send_buffer=8192) as (_, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /firehose HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.sleep(0.5)
        stuck_at = EVENTS["firehose_sent"]
        await asyncio.sleep(0.5)
        assert EVENTS["firehose_sent"] == stuck_at, "send() kept going while nobody read"
        assert stuck_at < 4 * 1024 * 1024
        sock.close()


async def test_disconnect_reaches_the_app() -> None:
    async with serving() as (_, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /wait-disconnect HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        for _ in range(200):
            if EVENTS.get("waiting"):
                break
            await asyncio.sleep(0.01)
        writer.close()
        for _ in range(500):
            if "disconnect" in EVENTS:
                break
            await asyncio.sleep(0.01)
    assert EVENTS["disconnect"] == "http.disconnect"


async def test_the_on_disconnect_extension_calls_back_when_the_client_leaves() -> None:
    async with serving() as (_, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /on-disconnect HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        for _ in range(200):
            if EVENTS.get("waiting"):
                break
            await asyncio.sleep(0.01)
        writer.close()
        for _ in range(500):
            if "callback" in EVENTS:
                break
            await asyncio.sleep(0.01)
    assert EVENTS.get("callback")


async def test_headers_not_finished_in_time_get_408_and_close() -> None:
    async with serving(Limits(header_timeout_s=0.3)) as (_, port):
        out = await raw(port, b"POST /echo HTTP/1.1\r\nhost: x\r\n")  # never ends its headers
    assert out.startswith(b"HTTP/1.1 408")
    err = orjson.loads(out.partition(b"\r\n\r\n")[2])["error"]
    assert err["code"] == "request_timeout" and "header_timeout_s" in err["message"]


async def test_connection_that_sends_nothing_is_closed_silently() -> None:
    async with serving(Limits(header_timeout_s=0.3)) as (_, port):
        assert await raw(port, b"") == b""


async def test_body_not_finished_in_time_gets_408_and_the_app_sees_a_disconnect() -> None:
    async with serving(Limits(body_timeout_s=0.3)) as (_, port):
        out = await raw(port, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly some")
    assert out.startswith(b"HTTP/1.1 408")
    assert "body_timeout_s" in orjson.loads(out.partition(b"\r\n\r\n")[2])["error"]["message"]


async def test_idle_keepalive_connection_is_closed() -> None:
    async with serving(Limits(keepalive_timeout_s=0.3)) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        await reader.readuntil(b"}")
        assert len(server.conns) == 1
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server when idle
        writer.close()


async def test_connections_beyond_the_cap_get_503_with_retry_after() -> None:
    async with serving(Limits(max_connections=2)) as (_, port):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.1)
        out = await raw(port, b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert b"retry-after: 1" in head
        assert orjson.loads(body)["error"]["code"] == "too_many_connections"
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        ok = await raw(port, b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")  # room again
        assert ok.startswith(b"HTTP/1.1 200")


async def test_drain_closes_idle_connections_and_finishes_busy_ones() -> None:
    async with serving() as (server, port):
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
        _, busy_w = await asyncio.open_connection("127.0.0.1", port)
        busy_w.write(b"POST /wait-disconnect HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        await asyncio.sleep(0.2)
        server.begin_drain()
        assert await asyncio.wait_for(idle_r.read(), 5) == b""
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)  # no longer accepting
        busy_w.close()
        idle_w.close()
        assert await server.wait_drained(5)


async def test_message_types_are_checked() -> None:
    seen: dict[str, BaseException] = {}

    async def bad(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.body", "body": b"x"})
        except RuntimeError as exc:
            seen["exc"] = exc
            raise

    server = HttpServer(bad)
    await server.startup()  # an app without lifespan support is fine
    sock = bind_socket("127.0.0.1", 0)
    await server.serve(sock)
    out = await raw(sock.getsockname()[1], b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await server.close()
    assert "before http.response.start" in str(seen["exc"])
    assert out.startswith(b"HTTP/1.1 500")
