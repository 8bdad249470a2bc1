"""A lean HTTP/1.1 server for one ASGI app: an asyncio Protocol per connection, httptools to parse.

Why not uvicorn: profiled at 500 streamed req/s (benchmarks/results/profile_gateway_uvicorn.txt), its
per-message ASGI cycle (a header write of its own, flow-control events, header validation by regex,
default headers) was the largest Python cost of the gateway after the engine client. This server
keeps the ASGI contract the gateway relies on and does less per message:

- `http.response.start` is held and written together with the first `http.response.body` (one
  write, one wake-up of the client, for the head and the first tokens);
- `send()` awaits only while the transport's write buffer is above its high-water mark (backpressure:
  a client that stops reading stops the relay, and through it the engine read);
- `receive()` returns the body, then `http.disconnect` when the client goes away (or once the response
  is complete, as uvicorn does), which is how the app cancels work for a client that left; the
  `inferline.on_disconnect` extension (`scope["extensions"]`) takes a callback instead, for an app that
  would rather not keep a task waiting in receive() per request;
- keep-alive, pipelined requests (answered in order), chunked responses, Content-Length, HEAD,
  `Expect: 100-continue`, and ASGI lifespan.

Slow and hostile clients are bounded here, before the app sees anything (`Limits`): request headers
must arrive within `header_timeout_s` and a body within `body_timeout_s` of its headers (408, then
close), an idle keep-alive connection is closed after `keepalive_timeout_s`, and beyond
`max_connections` open connections a new one gets a 503 (OpenAI error shape, Retry-After) and is
closed. Deadlines are checked by one sweep per server (no timer per request), and what the sweep
closes is logged as one summary line, so a flood of slow connections cannot flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httptools
import orjson

from inferline.types import ASGIApp, Message

log = logging.getLogger("inferline.http")

__all__ = ["HttpServer", "Limits", "bind_socket"]

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}
_READ_HIGH_WATER = 64 * 1024  # request body bytes buffered before we stop reading (the app reads them)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Where a connection is, for its deadline: waiting for the next request (keep-alive), reading a
# request's headers, reading its body, or the app owns it (no server deadline: the app's own
# timeouts and its stalled-client watch apply).
_IDLE, _HEAD, _BODY, _APP = 0, 1, 2, 3
_WHY = {
    _IDLE: "idle keep-alive",
    _HEAD: "request headers not complete within server.header_timeout_s",
    _BODY: "request body not complete within server.body_timeout_s",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client connection may hold (see ServerConfig for defaults and why)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keepalive_timeout_s: float = 30.0
    max_connections: int = 4096
    write_high_water: int = 64 * 1024  # transport buffer above which send() waits (uvicorn's value)


def _error(status: int, etype: str, code: str, message: str, extra: bytes = b"") -> bytes:
    """A complete response with the OpenAI error body; the connection closes after it."""
    body = orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})
    return (
        _STATUS_LINES[status]
        + b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


class _Cycle:
    """One request and its response: the receive/send pair the app is called with."""

    __slots__ = (
        "body",
        "body_len",
        "chunked",
        "complete",
        "conn",
        "continue_pending",
        "delivered",
        "disconnected",
        "head",
        "keep_alive",
        "more_body",
        "on_gone",
        "scope",
        "status",
        "task",
        "waiter",
    )

    def __init__(self, conn: _Conn, scope: dict[str, Any], keep_alive: bool, expect_continue: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.continue_pending = expect_continue
        self.body: list[bytes] = []
        self.body_len = 0
        self.more_body = True  # the request body is still arriving
        self.delivered = False  # the last http.request message was handed to the app
        self.waiter: asyncio.Future[None] | None = None
        self.head: tuple[int, list[tuple[bytes, bytes]]] | None = None  # held http.response.start
        self.chunked = False
        self.status = 0
        self.complete = False  # the response is complete
        self.disconnected = False
        self.task: asyncio.Task[None] | None = None
        self.on_gone: list[Callable[[], object]] | None = None

    def on_disconnect(self, callback: Callable[[], object]) -> None:
        """The `inferline.on_disconnect` ASGI extension: call `callback()` once if the client leaves before
        the response is complete, so an app can cancel its work without a task waiting in receive()."""
        if self.disconnected and not self.complete:
            self.conn.loop.call_soon(callback)
        elif self.on_gone is None:
            self.on_gone = [callback]
        else:
            self.on_gone.append(callback)

    def gone(self) -> None:
        """The client left (or its body timed out): receive() answers http.disconnect, callbacks run."""
        if self.disconnected or self.complete:
            return
        self.disconnected = True
        self.wake()
        callbacks, self.on_gone = self.on_gone, None
        for cb in callbacks or ():
            try:
                cb()
            except Exception:
                log.exception("on_disconnect callback failed")

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def run(self, app: ASGIApp) -> None:
        conn = self.conn
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            conn.abort_cycle(self)
            raise
        except BaseException:
            log.exception("internal error in the app serving %s %s", self.scope["method"], self.scope["path"])
            if (self.head is None or self.head[0] >= 0) and not self.complete and not self.disconnected:
                conn.write_and_close(
                    _error(500, "server_error", "internal_error", "internal error (see the gateway's log)")
                )
            conn.abort_cycle(self)
        else:
            if not self.complete and not self.disconnected:
                if self.head is None:
                    log.error("the app returned without a response to %s %s", self.scope["method"], self.scope["path"])
                    conn.write_and_close(_error(500, "server_error", "internal_error", "no response"))
                conn.abort_cycle(self)
        finally:
            # The scope holds our bound on_disconnect and we hold the scope: a reference cycle per request
            # that only the cyclic GC could free (measured: GC was a quarter of the gateway's CPU). Cut it.
            self.on_gone = None
            self.scope.pop("extensions", None)

    # -- ASGI receive ---------------------------------------------------------------------------
    async def receive(self) -> Message:
        if self.continue_pending:
            self.continue_pending = False
            if not self.complete and self.head is None:
                self.conn.transport.write(_CONTINUE)
        while True:
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self.body or (not self.more_body and not self.delivered):
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.body_len = 0
                if not self.more_body:
                    self.delivered = True
                self.conn.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            self.waiter = self.conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    # -- ASGI send ------------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            return  # the client is gone: the app learns it from receive(), as with uvicorn
        mtype = message["type"]
        if mtype == "http.response.body":
            if self.complete or self.head is None:
                when = "after the response completed" if self.complete else "before http.response.start"
                raise RuntimeError("http.response.body " + when)
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            if self.chunked:  # the streaming case: head already out
                if more:
                    if body:
                        conn.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
                    return
                conn.transport.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")
            elif self.head[0] >= 0:  # head held: it goes out with this first body
                conn.transport.write(self._head(body, more))
                if more:
                    return
            else:  # Content-Length body in several messages
                if body and self.scope["method"] != "HEAD":
                    conn.transport.write(body)
                if more:
                    return
            self.complete = True
            self.wake()  # a receive() waiting for the disconnect answers http.disconnect now
            conn.cycle_done(self)
        elif mtype == "http.response.start":
            if self.head is not None:
                raise RuntimeError("http.response.start sent twice")
            self.status = int(message["status"])
            self.head = (self.status, list(message.get("headers", ())))
        else:
            raise RuntimeError(f"unexpected ASGI message {mtype!r}")

    def _head(self, body: bytes, more: bool) -> bytes:
        """Status line, headers and the first body bytes, framed, as one buffer."""
        assert self.head is not None
        status, headers = self.head
        # The headers as one block, checked as one: a CR or LF inside a name or value (header injection)
        # shows as more line ends than headers. The per-header look at framing headers only when the
        # block mentions one (the gateway's own responses never do).
        block = b"".join([b"%b: %b\r\n" % (name, value) for name, value in headers])
        if block.count(b"\n") != len(headers) or block.count(b"\r") != len(headers):
            raise RuntimeError(f"invalid HTTP header in {[name for name, _ in headers]!r}")
        self.head = (-1, headers)  # out: later bodies are raw (Content-Length) or chunked
        parts = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status, block]
        length = chunked = False
        low = block.lower()
        if b"content-length:" in low or b"transfer-encoding:" in low or b"connection:" in low:
            for name, value in headers:
                lname = name.lower()
                if lname == b"content-length":
                    length = True
                elif lname == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif lname == b"connection" and b"close" in value.lower():
                    self.keep_alive = False
        if self.more_body:
            # Answered before the request body was read (an early 413, say): close rather than parse
            # the rest of a body nobody wants to find the next request.
            self.keep_alive = False
        if not self.keep_alive or self.conn.server.draining:
            self.keep_alive = False
            parts.append(b"connection: close\r\n")
        head_only = self.scope["method"] == "HEAD" or status in (204, 304) or status < 200
        if head_only:
            body = b""
        elif not length and not chunked:
            if more:
                chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                parts.append(b"content-length: %d\r\n" % len(body))
        parts.append(b"\r\n")
        if chunked and not head_only:
            self.chunked = True
            if body:
                parts += (b"%x\r\n" % len(body), body, b"\r\n")
            if not more:
                parts.append(b"0\r\n\r\n")
        else:
            parts.append(body)
        return b"".join(parts)


class _Conn(asyncio.Protocol):
    """One client connection: parses requests, runs one cycle at a time, holds the deadline."""

    __slots__ = (
        "client",
        "cycle",
        "deadline",
        "drainers",
        "expect_continue",
        "headers",
        "local",
        "loop",
        "parser",
        "parsing",
        "phase",
        "pipeline",
        "read_paused",
        "rejected",
        "seen_bytes",
        "server",
        "transport",
        "url",
        "write_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.cycle: _Cycle | None = None  # the request being answered
        self.parsing: _Cycle | None = None  # the request whose body is being read (may be queued)
        self.pipeline: deque[_Cycle] = deque()
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.read_paused = False
        self.write_paused = False
        self.drainers: list[asyncio.Future[None]] = []
        self.phase = _HEAD
        self.deadline = 0.0
        self.seen_bytes = False
        self.rejected = False
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        server.conns.add(self)
        if len(server.conns) > server.limits.max_connections:
            self.rejected = True  # answered 503 once its request head arrives
        transport.set_write_buffer_limits(high=server.limits.write_high_water)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        self.local = (local[0], local[1]) if isinstance(local, tuple) else None
        # The first request's head must arrive within header_timeout_s of the connection: a client
        # that connects and sends nothing (or a byte at a time) holds a slot only that long.
        self.deadline = self.loop.time() + server.limits.header_timeout_s

    def data_received(self, data: bytes) -> None:
        self.seen_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad_request("protocol upgrades (websocket, h2c) are not supported; use HTTP/1.1")
        except httptools.HttpParserError as exc:
            self._bad_request(f"malformed HTTP request: {exc}")

    def eof_received(self) -> bool | None:
        return None  # close our side too (a half-closed client cannot read a late answer reliably)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        cycles = [self.cycle, *self.pipeline] if self.cycle is not None else list(self.pipeline)
        if self.parsing is not None and self.parsing not in cycles:
            cycles.append(self.parsing)
        for c in cycles:
            if c is not None:
                c.gone()
        self.pipeline.clear()
        self._release_drainers()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._release_drainers()

    # -- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_continue = False
        if self.phase == _IDLE:
            self.phase = _HEAD
            self.deadline = self.loop.time() + self.server.limits.header_timeout_s

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        server = self.server
        if self.rejected:
            server.count_closed("over server.max_connections: answered 503")
            self.write_and_close(server.over_capacity)
            return
        parser = self.parser
        url = self.url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        else:  # absolute-form (a request through a forward proxy) or `*`
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": parser.get_http_version(),
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
        }
        cycle = _Cycle(self, scope, parser.should_keep_alive() and not server.draining, self.expect_continue)
        scope["extensions"] = {"inferline.on_disconnect": cycle.on_disconnect}
        self.parsing = cycle
        if self.phase == _HEAD:
            self.phase = _BODY
            self.deadline = self.loop.time() + server.limits.body_timeout_s
        if self.cycle is None:
            self.cycle = cycle
            cycle.task = self.loop.create_task(cycle.run(server.app))
        else:  # pipelined: answered in order, once the current response is complete
            self.pipeline.append(cycle)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        c = self.parsing
        if c is None or c.complete or c.disconnected:
            return
        c.body.append(body)
        c.body_len += len(body)
        if c.body_len > _READ_HIGH_WATER:
            self.pause_reading()  # the app reads at its pace; resume_reading() when it takes the body
        c.wake()

    def on_message_complete(self) -> None:
        c = self.parsing
        self.parsing = None
        if self.phase == _BODY:
            self.phase = _APP
            self.deadline = 0.0
        if c is not None:
            c.more_body = False
            c.wake()

    # -- cycle hand-offs ------------------------------------------------------------------------
    def cycle_done(self, cycle: _Cycle) -> None:
        """The response is complete: the next pipelined request, or idle until the next one."""
        if cycle is not self.cycle:
            return
        self.cycle = None
        if self.server.access_log:
            sc = cycle.scope
            who = "%s:%s" % (self.client or ("-", 0))
            log.info('%s "%s %s HTTP/%s" %d', who, sc["method"], sc["path"], sc["http_version"], cycle.status)
        if not cycle.keep_alive or self.server.draining:
            self.transport.close()  # after the buffered response is written
            return
        if self.pipeline:
            nxt = self.pipeline.popleft()
            self.cycle = nxt
            self.resume_reading()
            nxt.task = self.loop.create_task(nxt.run(self.server.app))
            return
        if self.parsing is None:
            self.phase = _IDLE
            self.deadline = self.loop.time() + self.server.limits.keepalive_timeout_s

    def abort_cycle(self, cycle: _Cycle) -> None:
        """The app ended without completing its response (error, cancellation): the connection
        cannot carry another request, so it closes (a client sees a truncated response, not a
        clean-looking one)."""
        if cycle.complete:
            return
        cycle.complete = True
        cycle.wake()
        if self.cycle is cycle:
            self.cycle = None
        if not self.transport.is_closing():
            self.transport.close()

    def write_and_close(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)
            self.transport.close()

    def _bad_request(self, message: str) -> None:
        if self.cycle is None or self.cycle.head is None:
            self.write_and_close(_error(400, "invalid_request_error", "bad_request", message))
        else:
            self.transport.close()

    # -- flow control ---------------------------------------------------------------------------
    async def drain(self) -> None:
        fut = self.loop.create_future()
        self.drainers.append(fut)
        await fut

    def _release_drainers(self) -> None:
        drainers, self.drainers = self.drainers, []
        for fut in drainers:
            if not fut.done():
                fut.set_result(None)

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.pipeline:
            self.read_paused = False
            self.transport.resume_reading()

    # -- deadlines and draining -----------------------------------------------------------------
    def expire(self) -> str:
        """The deadline passed: close (408 when a request had started arriving). Returns why."""
        why = _WHY[self.phase]
        if self.phase == _BODY:
            if self.parsing is not None:
                self.parsing.gone()  # the app's receive() answers http.disconnect
            self.write_and_close(self.server.timeout_408("body"))
        elif self.phase == _HEAD and self.seen_bytes:
            self.write_and_close(self.server.timeout_408("headers"))
        else:
            if self.phase == _HEAD:
                why = "connected but sent nothing within server.header_timeout_s"
            self.transport.close()
        return why

    def shutdown(self) -> None:
        """Draining: an idle connection closes now; a busy one after its current response."""
        if self.cycle is None and self.parsing is None:
            self.transport.close()
        elif self.cycle is not None:
            self.cycle.keep_alive = False


class HttpServer:
    """Serves one ASGI app on listening sockets; owns connections, deadlines, lifespan and draining."""

    def __init__(self, app: ASGIApp, limits: Limits | None = None, access_log: bool = False) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.access_log = access_log
        self._forced = False
        self.loop = asyncio.get_event_loop()
        self.conns: set[_Conn] = set()
        self.draining = False
        self._servers: list[asyncio.base_events.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._closed_counts: dict[str, int] = {}
        self._lifespan: _Lifespan | None = None
        retry = b"retry-after: 1\r\n"
        self.over_capacity = _error(
            503,
            "service_unavailable",
            "too_many_connections",
            f"the gateway holds its maximum of {self.limits.max_connections} connections "
            "(server.max_connections); retry shortly or on another replica",
            retry,
        )
        lim = self.limits
        self._408 = {
            "headers": _error(
                408,
                "invalid_request_error",
                "request_timeout",
                f"the request headers did not arrive within server.header_timeout_s ({lim.header_timeout_s:g}s)",
            ),
            "body": _error(
                408,
                "invalid_request_error",
                "request_timeout",
                f"the request body did not arrive within server.body_timeout_s ({lim.body_timeout_s:g}s)",
            ),
        }

    def timeout_408(self, what: str) -> bytes:
        return self._408[what]

    def count_closed(self, why: str) -> None:
        self._closed_counts[why] = self._closed_counts.get(why, 0) + 1

    # -- lifespan -------------------------------------------------------------------------------
    async def startup(self) -> None:
        """ASGI lifespan startup; raises RuntimeError with the app's message if it failed."""
        self._lifespan = _Lifespan(self.app)
        await self._lifespan.startup()

    async def shutdown(self) -> None:
        if self._lifespan is not None:
            await self._lifespan.shutdown()

    # -- serving --------------------------------------------------------------------------------
    async def serve(self, sock: socket.socket, backlog: int = 2048) -> None:
        server = await self.loop.create_server(lambda: _Conn(self), sock=sock, backlog=backlog)
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = self.loop.create_task(self._sweep(), name="http-deadlines")

    async def _sweep(self) -> None:
        lim = self.limits
        period = max(0.05, min(1.0, lim.header_timeout_s / 4, lim.body_timeout_s / 4, lim.keepalive_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for conn in [c for c in self.conns if c.phase != _APP and 0.0 < c.deadline < now]:
                self.count_closed(conn.expire())
            self._log_closed()

    def _log_closed(self) -> None:
        if not self._closed_counts:
            return
        counts, self._closed_counts = self._closed_counts, {}
        for why, n in counts.items():
            if why == _WHY[_IDLE]:
                log.debug("closed %d idle keep-alive connection(s) (server.keepalive_timeout_s)", n)
            else:
                log.warning("closed %d connection(s): %s", n, why)

    def begin_drain(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their current response."""
        if self.draining:
            return
        self.draining = True
        for s in self._servers:
            s.close()
        for conn in list(self.conns):
            conn.shutdown()

    async def wait_drained(self, timeout_s: float) -> bool:
        """Until every connection has closed (True), or timeout_s (False: the rest are cut)."""
        deadline = time.monotonic() + timeout_s
        while self.conns and time.monotonic() < deadline and not self._forced:  # noqa: ASYNC110 - a poll of a set
            await asyncio.sleep(0.05)
        left = list(self.conns)
        for conn in left:
            conn.transport.abort()
            if conn.cycle is not None and conn.cycle.task is not None:
                conn.cycle.task.cancel()
        return not left

    def force_stop(self) -> None:
        """Stop now: every connection is cut and wait_drained() returns."""
        self.begin_drain()
        self._forced = True
        for conn in list(self.conns):
            conn.transport.abort()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self._log_closed()
        for s in self._servers:
            s.close()
        for conn in list(self.conns):
            conn.transport.abort()


class _Lifespan:
    """ASGI lifespan: startup before serving, shutdown after draining."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._started: asyncio.Future[str | None] = asyncio.get_event_loop().create_future()
        self._stopped: asyncio.Future[str | None] = asyncio.get_event_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._unsupported = False

    async def startup(self) -> None:
        self._task = asyncio.get_event_loop().create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        failure = await self._started
        if failure is not None:
            raise RuntimeError(failure)

    async def shutdown(self) -> None:
        if self._task is None or self._unsupported or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        failure = await self._stopped
        if failure is not None:
            log.error("shutdown failed: %s", failure)
        await self._task

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": _ASGI, "state": {}}
        try:
            await self._app(scope, self._inbox.get, self._send)
        except Exception as exc:
            if not self._started.done():
                log.exception("start-up failed")
                self._started.set_result(str(exc) or type(exc).__name__)
            return
        finally:
            for fut in (self._started, self._stopped):
                if not fut.done():
                    self._unsupported = True
                    fut.set_result(None)

    async def _send(self, message: Message) -> None:
        mtype = message["type"]
        if mtype == "lifespan.startup.complete":
            self._started.set_result(None)
        elif mtype == "lifespan.startup.failed":
            # An empty message: the app has logged the cause itself (once, one line); "" says so to the caller.
            self._started.set_result(str(message.get("message") or ""))
        elif mtype == "lifespan.shutdown.complete":
            self._stopped.set_result(None)
        elif mtype == "lifespan.shutdown.failed":
            self._stopped.set_result(str(message.get("message") or "shutdown failed"))


def bind_socket(host: str, port: int, *, send_buffer_bytes: int = 0, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; accepted connections inherit its SO_SNDBUF (bounded per-client buffering).

    Raises OSError (errno EADDRINUSE when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if send_buffer_bytes:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
