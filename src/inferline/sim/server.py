"""One simulated engine on one port: a small HTTP/1.1 server over asyncio, and the engine's fault switches.

Raw asyncio protocols instead of a web framework: the engine's step loop writes each token straight
to the connection's transport (one `transport.write` per token, no task switch, no per-chunk
framework layers), which keeps the simulator far cheaper per chunk than the gateway it measures.
HTTP/1.1 keep-alive, Content-Length and chunked request bodies, `Expect: 100-continue`; responses
are Content-Length JSON or chunked SSE. A closed connection aborts its request at once.

Routes: POST /v1/chat/completions, /v1/completions, /tokenize; GET /v1/models, /health, /metrics, and
/dcgm/metrics (the simulated GPU's DCGM-exporter series; 404 for a profile that models a CPU engine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from inferline.sim.engine import SimEngine
from inferline.sim.gpu import DcgmMetrics
from inferline.sim.metrics import METRICS_CONTENT_TYPE
from inferline.sim.scheduler import RequestState, SchedulingPolicy, SimRequest
from inferline.sim.wire import (
    BadRequest,
    CompletionCall,
    StreamFormat,
    completion_body,
    error_body,
    models_body,
    parse_completion,
    tokenize_body,
)

__all__ = ["SimServer"]

log = logging.getLogger(__name__)

_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 32 * 1024 * 1024
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
_JSON = b"application/json"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nserver: inferline-sim\r\n"
)
_FAIL_HOW = {
    "cut": b"",
    "error": b"data: "
    + error_body(500, "simulated engine failure mid-stream (EngineDeadError)")
    + b"\n\ndata: [DONE]\n\n",
    "garbage": b'data: {"id":"broken","choices":[{"delta":{"content":\n\n',
}
_COMPLETION_PATHS = {b"/v1/chat/completions": True, b"/v1/completions": False}
_ROUTES = {
    b"/v1/chat/completions": b"POST",
    b"/v1/completions": b"POST",
    b"/tokenize": b"POST",
    b"/v1/models": b"GET",
    b"/health": b"GET",
    b"/metrics": b"GET",
    b"/dcgm/metrics": b"GET",
}


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SimServer:
    """A simulated engine served on HOST:PORT, with switches for the faults gateway tests need.

    Faults (each stays until changed; `clear_faults()` resets all):
      - `await stop()` / `await start()`: close the port (connection refused, open streams cut) / reopen it.
      - `fail_after(n, how)`: after n tokens of every response (None: off), `how`:
        "cut" aborts the connection; "error" (streams) sends vLLM's in-band error event then [DONE];
        "garbage" (streams) sends a malformed SSE event and ends the stream.
      - `stall()`: the engine stops computing; streams stay open and silent, new requests queue.
      - `respond_with(status)`: completions answer that status (500, 503...) with an OpenAI error body;
        /health too unless health=False.
    """

    def __init__(self, engine: SimEngine, *, host: str = "127.0.0.1", port: int = 0, name: str = "0") -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.name = name
        self.fail_after_tokens: int | None = None
        self.fail_how = "cut"
        self.error_status: int | None = None
        self.health_status = 200
        self._listener: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._ids = 0
        self._dcgm: DcgmMetrics | None = None

    @property
    def url(self) -> str:
        """Base URL (http://host:port); the OpenAI API is under /v1."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._listener is not None

    async def start(self) -> None:
        """Start the engine loop and listen (on the same port as before after a stop)."""
        self.engine.start()
        if self._listener is not None:
            return
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: _Conn(self), self.host, self.port, reuse_address=True, backlog=2048
        )
        if self.port == 0:
            self.port = self._listener.sockets[0].getsockname()[1]
        gpu = self.engine.profile.gpu
        if gpu is not None and self._dcgm is None:
            index = int(self.name) if self.name.isdigit() else 0
            self._dcgm = DcgmMetrics(gpu, index=index, address=f"{self.host}:{self.port}")

    def render_dcgm(self) -> bytes | None:
        """The DCGM-exporter text for this engine's simulated GPU; None when the profile models a CPU engine."""
        if self._dcgm is None:
            return None
        return self._dcgm.render(self.engine.busy.utilization(), self.engine.alive)

    async def stop(self) -> None:
        """Close the port and cut every open connection; their requests are aborted (the engine 'dies')."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for conn in list(self._conns):
            conn.kill()
        if listener is not None:
            await listener.wait_closed()

    async def close(self) -> None:
        await self.stop()
        await self.engine.close()

    def fail_after(self, tokens: int | None, how: str = "cut") -> None:
        if how not in _FAIL_HOW:
            raise ValueError(f"how must be one of {', '.join(_FAIL_HOW)}; got {how!r}")
        self.fail_after_tokens, self.fail_how = tokens, how

    def stall(self, stalled: bool = True) -> None:
        self.engine.stall(stalled)

    def respond_with(self, status: int | None, *, health: bool = True) -> None:
        self.error_status = status
        self.health_status = status if (status is not None and health) else 200

    def clear_faults(self) -> None:
        self.fail_after(None)
        self.stall(False)
        self.respond_with(None)

    def next_request_id(self, chat: bool) -> str:
        self._ids += 1
        return f"{'chatcmpl' if chat else 'cmpl'}-sim{self.name}-{self._ids}"


class _Conn(asyncio.Protocol):
    """One client connection. It is the TokenSink of the request it is serving (one at a time)."""

    __slots__ = (
        "_buf",
        "_call",
        "_continue_sent",
        "_created",
        "_fmt",
        "_keep_alive",
        "_rid",
        "_server",
        "_transport",
        "req",
    )

    def __init__(self, server: SimServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._keep_alive = True
        self._continue_sent = False
        self.req: SimRequest | None = None
        self._call: CompletionCall | None = None
        self._fmt: StreamFormat | None = None
        self._rid = ""
        self._created = 0

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport). Both loops set TCP_NODELAY.
        self._transport = cast(asyncio.Transport, transport)
        self._server._conns.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self.req is None:
            self._process()
        elif len(self._buf) > _MAX_BODY_BYTES:  # a client pipelining without end while we stream
            self.kill()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost aborts any request in flight

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._conns.discard(self)
        self._abort_request()

    # -- TokenSink ------------------------------------------------------------------------------------------

    def on_token(self, req: SimRequest) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or req is not self.req:
            return
        fmt = self._fmt
        if fmt is not None:
            transport.write(fmt.token(req))  # one HTTP chunk; the last one also ends the body
            if req.finish_reason:
                self._finish()
                return
        elif req.finish_reason:
            assert self._call is not None
            self._respond(200, completion_body(self._call, req, self._rid, self._created))
            self._finish()
            return
        cut = self._server.fail_after_tokens
        if cut is not None and req.num_output >= cut:
            ending = _FAIL_HOW[self._server.fail_how]
            if ending and fmt is not None:  # end the stream "cleanly" around the fault, as vLLM would
                transport.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(ending), ending))
                self._abort_request()
                self._finish()
            else:
                self.kill()

    # -- internals ------------------------------------------------------------------------------------------

    def kill(self) -> None:
        """Abort the connection (no clean end) and the request it carries."""
        self._abort_request()
        if self._transport is not None:
            self._transport.abort()

    def _abort_request(self) -> None:
        req, self.req = self.req, None
        if req is not None and req.state in (RequestState.WAITING, RequestState.RUNNING):
            self._server.engine.abort(req)

    def _finish(self) -> None:
        self.req = self._call = self._fmt = None
        if not self._keep_alive:
            assert self._transport is not None
            self._transport.close()
        elif self._buf:
            self._process()

    def _process(self) -> None:
        """Handle every complete request in the buffer, until one is left in flight."""
        while self.req is None and self._buf and self._transport is not None and not self._transport.is_closing():
            try:
                parsed = self._parse()
            except _HttpError as exc:
                self._keep_alive = False
                self._respond(exc.status, error_body(exc.status, exc.message))
                return
            if parsed is None:
                return
            method, path, headers, body = parsed
            try:
                self._dispatch(method, path, headers, body)
            except Exception:  # a simulator bug must still answer, and say so
                log.exception("sim engine %s: error handling %r", self._server.name, path)
                self._abort_request()
                self._keep_alive = False
                self._respond(500, error_body(500, "simulator internal error (see its log)"))

    def _parse(self) -> tuple[bytes, bytes, dict[bytes, bytes], bytes] | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD_BYTES:
                raise _HttpError(431, "request head too large")
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            raise _HttpError(400, "malformed request line") from None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _HttpError(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            decoded = _dechunk(buf, start)
            if decoded is None:
                self._maybe_continue(headers)
                return None
            body, consumed = decoded
        else:
            try:
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                raise _HttpError(400, "bad content-length") from None
            if length > _MAX_BODY_BYTES:
                raise _HttpError(413, f"request body over {_MAX_BODY_BYTES} bytes")
            if len(buf) - start < length:
                self._maybe_continue(headers)
                return None
            body, consumed = bytes(buf[start : start + length]), start + length
        del buf[:consumed]
        self._continue_sent = False
        connection = headers.get(b"connection", b"").lower()
        self._keep_alive = (b"close" not in connection) and (version == b"HTTP/1.1" or b"keep-alive" in connection)
        return method, target.partition(b"?")[0], headers, body

    def _maybe_continue(self, headers: dict[bytes, bytes]) -> None:
        if not self._continue_sent and headers.get(b"expect", b"").lower() == b"100-continue":
            self._continue_sent = True
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dispatch(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        server, engine = self._server, self._server.engine
        allowed = _ROUTES.get(path)
        if allowed is None:
            self._respond(404, b'{"detail":"Not Found"}')
        elif method != allowed:
            self._respond(405, b'{"detail":"Method Not Allowed"}')
        elif path == b"/health":
            self._respond(server.health_status if engine.alive else 503, b"")  # vLLM: 503 once the engine died
        elif path == b"/metrics":
            self._respond(200, engine.render_metrics(), METRICS_CONTENT_TYPE.encode())
        elif path == b"/dcgm/metrics":
            dcgm = server.render_dcgm()
            if dcgm is None:
                msg = f"profile {engine.profile.name} models an engine on CPU: no GPU, no DCGM series"
                self._respond(404, error_body(404, msg))
            else:
                self._respond(200, dcgm, METRICS_CONTENT_TYPE.encode())
        elif path == b"/v1/models":
            self._respond(200, models_body(engine.model, engine.max_model_len))
        elif path == b"/tokenize":
            try:
                self._respond(200, tokenize_body(body, engine.max_model_len))
            except BadRequest as exc:
                self._respond(exc.status, error_body(exc.status, exc.message, exc.param))
        else:
            self._complete(_COMPLETION_PATHS[path], headers, body)

    def _complete(self, chat: bool, headers: dict[bytes, bytes], body: bytes) -> None:
        server, engine = self._server, self._server.engine
        if server.error_status is not None:
            status = server.error_status
            self._respond(status, error_body(status, f"simulated engine error (sim engine {server.name})"))
            return
        priority_header = headers.get(b"x-vllm-priority")
        try:
            call = parse_completion(
                body,
                chat=chat,
                served_model=engine.model,
                max_model_len=engine.max_model_len,
                priority_enabled=engine.policy is SchedulingPolicy.PRIORITY,
                priority_header=priority_header.decode("latin-1") if priority_header else None,
                block_tokens=engine.scheduler.block_size if engine.prefix_caching else 0,
            )
        except BadRequest as exc:
            self._respond(exc.status, error_body(exc.status, exc.message, exc.param))
            return
        self._call = call
        self._rid = server.next_request_id(chat)
        self._created = int(time.time())
        if call.stream:
            self._fmt = StreamFormat(call, self._rid, self._created)
            assert self._transport is not None
            head = _SSE_HEAD if self._keep_alive else _SSE_HEAD + b"connection: close\r\n"
            self._transport.write(head + b"\r\n")
        self.req = engine.submit(
            self._rid,
            call.prompt_tokens,
            call.max_tokens,
            sink=self,
            priority=call.priority,
            min_tokens=call.min_tokens,
            ignore_eos=call.ignore_eos,
            block_hashes=call.block_hashes,
        )

    def _respond(self, status: int, body: bytes, content_type: bytes = _JSON) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        head = b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\nserver: inferline-sim\r\n" % (
            status,
            _REASONS.get(status, b"Unknown"),
            content_type,
            len(body),
        )
        if not self._keep_alive:
            head += b"connection: close\r\n"
        transport.write(head + b"\r\n" + body)
        if not self._keep_alive:
            transport.close()


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at START: (body, bytes consumed), or None if incomplete."""
    parts: list[bytes] = []
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        except ValueError:
            raise _HttpError(400, "malformed chunk size") from None
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # no trailers: the CRLF right after "0\r\n"
            if end < 0:
                return None
            return b"".join(parts), end + 4
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        if sum(map(len, parts)) > _MAX_BODY_BYTES:
            raise _HttpError(413, f"request body over {_MAX_BODY_BYTES} bytes")
        pos += size + 2
