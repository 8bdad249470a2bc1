"""A fault engine for fuzzing the SSE relay: it sends a scripted event stream cut at chosen byte offsets.

An OpenAI-compatible engine (configure it as `kind: openai`: no load polling) on a loopback port, served by
a raw asyncio server in its own thread, so the exact bytes and where they are cut are ours: each piece
goes out as its own HTTP chunk, with TCP_NODELAY and a pause after it, so the gateway's reads really end
there — inside a `data:` line, inside a multi-byte UTF-8 character, between `\\r` and `\\n`.

The script of a request is registered with `plan(...)`, which returns an id; the request names it in its
first message's content (`plan:<id>`), which the gateway forwards untouched.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from dataclasses import dataclass, field

import orjson


@dataclass
class Plan:
    body: bytes  # the whole SSE body the engine sends
    cuts: list[int]  # byte offsets where a piece ends (sorted, inside the body)
    end: str = "close"  # "close": the chunked body ends properly; "abort": the connection is cut after the body
    served: int = 0
    pieces: list[bytes] = field(default_factory=list)


def sse_body(payloads: list[bytes], newline: bytes = b"\n", comments: bool = False) -> bytes:
    """`data: <payload>` events; optional SSE comment lines between them (engines send keep-alives)."""
    out = []
    for p in payloads:
        if comments:
            out.append(b": keep-alive" + newline)
        out.append(b"data: " + p + newline + newline)
    return b"".join(out)


class SplitEngine:
    def __init__(self) -> None:
        self._plans: dict[str, Plan] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="split-engine", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, body: bytes, cuts: list[int], end: str = "close") -> str:
        pid = str(next(self._ids))
        self._plans[pid] = Plan(body, sorted({c for c in cuts if 0 < c < len(body)}), end)
        return pid

    def served(self, pid: str) -> int:
        return self._plans[pid].served

    def start(self) -> SplitEngine:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("split engine did not start")
        return self

    def stop(self) -> None:
        async def _close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:  # keep-alive: the gateway reuses connections
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, _path, _ = request_line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET":
                    await self._json(writer, {"object": "list", "data": [{"id": "m", "object": "model"}]})
                    continue
                if not await self._stream(writer, body):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _json(self, writer: asyncio.StreamWriter, obj: object) -> None:
        raw = orjson.dumps(obj)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(raw), raw)
        )
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, raw: bytes) -> bool:
        """Send the plan named in the request; False when the connection must not be reused."""
        request = orjson.loads(raw)
        messages = request.get("messages") or [{"content": request.get("prompt", "")}]
        pid = str(messages[0].get("content", "")).removeprefix("plan:")
        plan = self._plans[pid]
        plan.served += 1
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        bounds = [0, *plan.cuts, len(plan.body)]
        for start, stop in itertools.pairwise(bounds):
            piece = plan.body[start:stop]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.002)  # the piece leaves alone: the gateway's read ends where it ends
        if plan.end == "abort":
            transport = writer.transport
            transport.abort()
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True
