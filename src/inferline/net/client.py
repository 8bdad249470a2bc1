"""A lean HTTP/1.1 client for engines: keep-alive pool per base URL, httptools to parse, pull-based bodies.

Why not aiohttp: profiled at 500 streamed req/s, aiohttp's request machinery (ClientRequest and
ClientResponse objects, header multidicts, its Python chunk parser and StreamReader, a timer
rescheduled on every read) was the gateway's largest cost per request and per chunk. An engine is a
known, trusted, local peer that speaks plain HTTP/1.1; this client does what the relay needs and no
more:

- one write per request (head and body together), responses parsed by httptools (llhttp, in C),
  chunked bodies decoded there; one wake-up of the reader per network read, whatever it carried;
- pull-based bodies: what arrived waits in the response until the relay asks for it; past 64 KiB
  unread the connection stops reading, so a slow client slows the engine read (backpressure);
- keep-alive: a response read to its end gives its connection back; idle connections are dropped
  after `keepalive_s` (below the engines' own 5 s), and a request written into a pooled connection the
  engine closed meanwhile (no byte of answer) is resent once on a fresh one, which is safe: the engine
  never saw it;
- closing a response before its end closes the connection: that is what makes the engine abort;
- timeouts: connecting (`connect_timeout_s`) and silence while the reader waits (`read_timeout_s`,
  checked by one sweep per pool, not a timer per read); TLS for remote providers.

Errors leave as BackendConnectError (refused, reset, closed mid-body, malformed) or TimeoutError.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

from inferline.backends.base import BackendConnectError

__all__ = ["HttpPool", "Response"]

_READ_HIGH_WATER = 64 * 1024  # unread body bytes held per response before the connection pauses


class Response:
    """An engine's answer whose head has arrived; the body is read only when asked for."""

    __slots__ = ("_conn", "_exc", "_pieces", "_size", "_waiter", "complete", "eof_ends", "head_done", "status")

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self.status = 0
        self.head_done = False
        self.complete = False  # the whole body has arrived
        self.eof_ends = False  # no keep-alive: the body may be delimited by the connection's end
        self._pieces: list[bytes] = []
        self._size = 0
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- fed by the connection ------------------------------------------------------------------
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        w = self._waiter
        if w is not None and not w.done():
            w.set_exception(exc)

    # -- read by the relay ----------------------------------------------------------------------
    async def _wait(self) -> None:
        if self._exc is not None:
            raise self._exc
        self._waiter = self._conn.loop.create_future()
        self._conn.waiting = True
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._conn.waiting = False

    def _take(self) -> bytes:
        pieces = self._pieces
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()  # in place: the connection appends to this list
        self._size = 0
        self._conn.resume()
        return data

    async def chunks(self) -> bytes:
        """Whatever body bytes arrived since the last call (waits for some); b"" at the end."""
        while True:
            if self._pieces:
                return self._take()
            if self.complete:
                return b""
            await self._wait()

    async def read(self, limit_bytes: int) -> bytes:
        """The whole body; BackendConnectError past limit_bytes."""
        parts: list[bytes] = []
        size = 0
        while True:
            data = await self.chunks()
            if not data:
                return b"".join(parts)
            size += len(data)
            if size > limit_bytes:
                self.close()
                raise BackendConnectError(f"engine response larger than {limit_bytes} bytes")
            parts.append(data)

    async def finish(self, timeout_s: float = 1.0) -> None:
        """After the last event: read to the end of the body so the connection goes back to the pool.

        Bounded: a body that does not end within timeout_s is closed instead."""
        if not self.complete:
            try:
                async with asyncio.timeout(timeout_s):
                    while await self.chunks():
                        pass
            except (TimeoutError, BackendConnectError):
                self.close()
                return
        self._conn.release(self)

    def close(self) -> None:
        """Done with it: a complete response gives its connection back; an incomplete one closes it
        (which makes the engine abort the request)."""
        if self.complete and self._exc is None:
            self._conn.release(self)
        else:
            self._conn.discard(self)


class _Conn(asyncio.Protocol):
    """One connection to the engine; carries one request at a time."""

    __slots__ = (
        "append",
        "closed",
        "idle_since",
        "keep_alive",
        "last_io",
        "loop",
        "parser",
        "paused",
        "pool",
        "resp",
        "transport",
        "used",
        "waiting",
    )

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.resp: Response | None = None
        self.append: Callable[[bytes], None] = _drop
        self.closed = False
        self.keep_alive = True
        self.paused = False
        self.waiting = False  # the relay waits for this connection's data (the read timeout applies)
        self.used = 0  # requests carried
        self.idle_since = 0.0
        self.last_io = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_io = self.loop.time()
        resp = self.resp
        if resp is None:  # bytes nobody asked for (a confused engine): this connection is unusable
            self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            resp._fail(BackendConnectError(f"malformed HTTP response from the engine: {exc}"))
            self.transport.abort()
            return
        resp._size += len(data)  # unread bytes, framing included: a bound, counted once per read
        if resp._size > _READ_HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        resp._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._idle_discard(self)
        resp = self.resp
        if resp is not None and not resp.complete and resp.head_done and resp.eof_ends and exc is None:
            # A body without length or chunking ends with the connection (HTTP/1.0 style). A truncated
            # one that had a length is caught by its reader: a stream without [DONE], JSON that is cut.
            resp.complete = True
            resp._wake()
        elif resp is not None and not resp.complete:
            if resp.head_done:
                why = "the engine closed the connection mid-response"
            else:
                why = "the engine closed the connection before answering"
            resp._fail(BackendConnectError(f"{why}" + (f": {exc}" if exc else "")))

    # -- httptools callbacks --------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        resp = self.resp
        if resp is not None:
            resp.status = self.parser.get_status_code()
            resp.eof_ends = not self.parser.should_keep_alive()
            resp.head_done = True

    def on_body(self, body: bytes) -> None:
        self.append(body)  # the current response's pieces (bound per request: one call per chunk)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        resp = self.resp
        if resp is not None:
            resp.complete = True

    # -- pool hand-offs -------------------------------------------------------------------------
    def resume(self) -> None:
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def release(self, resp: Response) -> None:
        if self.resp is not resp:
            return
        self.resp = None
        self.append = _drop
        if self.keep_alive and not self.closed and not self.paused:
            self.pool._idle_put(self)
        else:
            self.transport.close()

    def discard(self, resp: Response) -> None:
        if self.resp is not resp:
            return
        self.resp = None
        self.append = _drop
        self.closed = True
        self.transport.close()


class HttpPool:
    """Keep-alive connections to one base URL (scheme, host, port and an optional path prefix)."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        keepalive_s: float = 4.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"engine URL must be http(s)://host[:port][/prefix]; got {base_url!r}")
        self.loop = asyncio.get_event_loop()
        self._host = url.hostname
        self._tls = url.scheme == "https"
        self._port = url.port or (443 if self._tls else 80)
        self._prefix = url.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self._tls else None
        default_port = (self._tls and self._port == 443) or (not self._tls and self._port == 80)
        host_header = self._host if default_port else f"{self._host}:{self._port}"
        if ":" in self._host and not host_header.startswith("["):
            host_header = f"[{self._host}]" + ("" if default_port else f":{self._port}")
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head_tail = f"host: {host_header}\r\n{extra}".encode("latin-1")
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self._idle: list[_Conn] = []
        self._busy: set[_Conn] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # -- requests -------------------------------------------------------------------------------
    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: bytes = b"application/json"
    ) -> Response:
        """Send one request; returns once the response head has arrived."""
        if self._closed:
            raise BackendConnectError("the engine client is closed")
        head = b"%s %s HTTP/1.1\r\n%scontent-length: %d\r\n" % (
            method.encode(),
            (self._prefix + path).encode(),
            self._head_tail,
            len(body),
        )
        data = head + (b"content-type: " + content_type + b"\r\n\r\n" if body else b"\r\n") + body
        conn = self._idle_get()
        if conn is not None:
            try:
                return await self._exchange(conn, data)
            except _Stale:
                pass  # the engine closed it while idle: it never saw the request, send it again
        conn = await self._connect()
        try:
            return await self._exchange(conn, data)
        except _Stale as exc:
            raise BackendConnectError(str(exc)) from None

    async def _exchange(self, conn: _Conn, data: bytes) -> Response:
        resp = Response(conn)
        conn.resp = resp
        conn.append = resp._pieces.append
        conn.used += 1
        conn.last_io = self.loop.time()
        self._busy.add(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.create_task(self._sweep(), name=f"engine-client {self._host}:{self._port}")
        try:
            conn.transport.write(data)
            while not resp.head_done:
                await resp._wait()
        except BackendConnectError as exc:
            conn.discard(resp)
            self._busy.discard(conn)
            if conn.used > 1 and not resp.head_done and not resp._pieces:
                raise _Stale(str(exc)) from None
            raise
        except BaseException:
            conn.discard(resp)
            self._busy.discard(conn)
            raise
        return resp

    async def _connect(self) -> _Conn:
        conn = _Conn(self)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self.loop.create_connection(
                    lambda: conn,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._tls else None,
                )
        except TimeoutError:
            raise TimeoutError(f"could not connect within {self.connect_timeout_s:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise BackendConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    # -- the idle pool --------------------------------------------------------------------------
    def _idle_get(self) -> _Conn | None:
        now = self.loop.time()
        while self._idle:
            conn = self._idle.pop()  # most recently used: the least likely to have been closed
            if conn.closed or now - conn.idle_since > self.keepalive_s:
                conn.transport.close()
                continue
            return conn
        return None

    def _idle_put(self, conn: _Conn) -> None:
        self._busy.discard(conn)
        if self._closed:
            conn.transport.close()
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)

    def _idle_discard(self, conn: _Conn) -> None:
        self._busy.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    async def _sweep(self) -> None:
        """Read timeouts of busy connections and the keep-alive bound of idle ones, once per period."""
        period = max(0.05, min(1.0, self.read_timeout_s / 4, self.keepalive_s / 2))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for conn in [c for c in self._busy if c.waiting and now - c.last_io > self.read_timeout_s]:
                if conn.resp is not None:
                    conn.resp._fail(TimeoutError(f"the engine sent nothing for {self.read_timeout_s:g}s"))
                conn.closed = True
                conn.transport.abort()
                self._busy.discard(conn)
            stale = [c for c in self._idle if now - c.idle_since > self.keepalive_s]
            for conn in stale:
                self._idle.remove(conn)
                conn.transport.close()

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for conn in [*self._idle, *self._busy]:
            conn.transport.close()
        self._idle.clear()
        self._busy.clear()


def _drop(body: bytes) -> None:
    """on_body with no response waiting for it (cannot happen once a request is written)."""


class _Stale(Exception):
    """A pooled connection was closed by the engine before it answered: resend on a fresh one."""
