"""A trivially fast OpenAI-style SSE server: the yardstick for the load generator, and its test fixture.

Raw asyncio protocol, HTTP/1.1 keep-alive, chunked SSE. Without delays or faults a whole response is
one prebuilt `write()`; with `tick_s` set, one ticker writes the next chunk of every open stream each
tick instead (one network read per chunk on the client, as with a real engine). A `plan` picks each
request's reply by arrival index: delays before the first and between chunks, an HTTP error status,
a mid-stream cut, or an in-band error event.

    python -m inferline.bench.fakeserver --port 8099 [--tick 0.001]   # serves until Ctrl-C
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson

DEFAULT_TOKENS = 16


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    tokens: int | None = None  # content chunks; None: the request's max_tokens (or the server default)
    ttft_s: float = 0.0  # delay before the first content chunk
    itl_s: float = 0.0  # delay between content chunks
    cut_after: int | None = None  # close the connection after this many content chunks, no terminator
    error_after: int | None = None  # send an error event after this many content chunks, then end
    usage: bool | None = None  # None: as the request asks (stream_options.include_usage)


Plan = Callable[[int], Reply]

_OK_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(obj: dict[str, Any]) -> bytes:
    return _chunk(b"data: " + orjson.dumps(obj) + b"\n\n")


class _Proto(asyncio.Protocol):
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._conns.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = buf[:head_end]
            length = _content_length(head)
            end = head_end + 4 + length
            if len(buf) < end:
                break
            body, buf = buf[head_end + 4 : end], buf[end:]
            self.server._handle(self, head, body)
        self.buf = buf

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _content_length(head: bytes) -> int:
    i = head.lower().find(b"\r\ncontent-length:")
    if i < 0:
        return 0
    j = head.find(b"\r\n", i + 2)
    return int(head[i + 17 : j if j >= 0 else len(head)].strip())


class FakeServer:
    """Serve on 127.0.0.1; `url` is the base (no /v1). `requests` counts POSTs answered."""

    def __init__(
        self,
        plan: Plan | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "fake",
        tick_s: float | None = None,
    ) -> None:
        self.plan = plan
        self.tick_s = tick_s
        self._paced: list[tuple[_Proto, list[bytes]]] = []
        self._ticker: asyncio.Task[None] | None = None
        self.host, self.port, self.model = host, port, model
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._conns: set[_Proto] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cache: dict[tuple[bool, int, bool, int], bytes] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Proto(self), self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.tick_s:
            self._ticker = loop.create_task(self._tick(self.tick_s))
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        for t in list(self._tasks):
            t.cancel()
        for c in list(self._conns):
            c.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _handle(self, conn: _Proto, head: bytes, body: bytes) -> None:
        line = head.split(b"\r\n", 1)[0].split(b" ")
        method, path = line[0], line[1] if len(line) > 1 else b"/"
        if method == b"GET" and path.rstrip(b"/").endswith(b"/models"):
            data = orjson.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]})
            conn.write(_response(200, data))
            return
        if method != b"POST" or not path.endswith(b"completions"):
            conn.write(_response(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}'))
            return
        index = self.requests
        self.requests += 1
        reply = self.plan(index) if self.plan is not None else Reply()
        if reply.status != 200:
            err = {"error": {"message": f"fake status {reply.status}", "type": "fake", "code": reply.status}}
            conn.write(_response(reply.status, orjson.dumps(err)))
            return
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            conn.write(_response(400, b'{"error":{"message":"bad json","type":"invalid_request_error"}}'))
            return
        chat = path.endswith(b"chat/completions")
        tokens = reply.tokens if reply.tokens is not None else int(req.get("max_tokens") or DEFAULT_TOKENS)
        usage = reply.usage
        if usage is None:
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
        prompt_tokens = _prompt_words(req)
        faults = reply.cut_after is not None or reply.error_after is not None
        plain = reply.ttft_s == 0 and reply.itl_s == 0 and not faults
        if plain and self.tick_s:
            parts = _stream_parts(chat, tokens, usage, prompt_tokens, self.model)
            first = 2 if chat else 1
            conn.write(b"".join(parts[:first]))
            tail = parts[first + tokens :]
            queue = [*parts[first : first + tokens], b"".join(tail)]
            queue.reverse()  # pop() from the end
            self._paced.append((conn, queue))
            return
        if plain:
            key = (chat, tokens, usage, prompt_tokens)
            whole = self._cache.get(key)
            if whole is None:
                whole = b"".join(_stream_parts(chat, tokens, usage, prompt_tokens, self.model))
                if len(self._cache) < 4096:
                    self._cache[key] = whole
            conn.write(whole)
            return
        task = asyncio.get_running_loop().create_task(self._slow(conn, reply, chat, tokens, usage, prompt_tokens))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self, tick_s: float) -> None:
        """Each tick, the next chunk of every paced stream: one timer wake for all of them."""
        while True:
            await asyncio.sleep(tick_s)
            keep: list[tuple[_Proto, list[bytes]]] = []
            for conn, queue in self._paced:
                if conn.transport is None:
                    continue
                conn.write(queue.pop())
                if queue:
                    keep.append((conn, queue))
            self._paced = keep

    async def _slow(self, conn: _Proto, r: Reply, chat: bool, tokens: int, usage: bool, prompt: int) -> None:
        parts = _stream_parts(chat, tokens, usage, prompt, self.model)
        first = 2 if chat else 1  # head (+ the role event) go out at once
        conn.write(b"".join(parts[:first]))
        content = parts[first : first + tokens]
        for i, part in enumerate(content):
            if r.cut_after is not None and i == r.cut_after:
                conn.close()
                return
            if r.error_after is not None and i == r.error_after:
                err = {"error": {"message": "fake engine failure", "type": "server_error"}}
                conn.write(_event(err) + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                return
            await asyncio.sleep(r.ttft_s if i == 0 else r.itl_s)
            conn.write(part)
        if r.cut_after is not None and r.cut_after >= tokens:
            conn.close()
            return
        conn.write(b"".join(parts[first + tokens :]))


def _prompt_words(req: dict[str, Any]) -> int:
    if "messages" in req:
        return sum(len(str(m.get("content", "")).split()) for m in req["messages"])
    return len(str(req.get("prompt", "")).split())


def _stream_parts(chat: bool, tokens: int, usage: bool, prompt: int, model: str) -> list[bytes]:
    """[head, (role event,) content events..., finish event, (usage event,) [DONE] + terminator]."""
    base: dict[str, Any] = {
        "id": "cmpl-fake",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": 0,
        "model": model,
    }
    parts = [_OK_HEAD]
    if chat:
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
        parts.append(_event({**base, "choices": [role]}))
        tok = _event({**base, "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]})
        fin = _event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    else:
        tok = _event({**base, "choices": [{"index": 0, "text": "tok ", "finish_reason": None}]})
        fin = _event({**base, "choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    parts.extend([tok] * tokens)
    parts.append(fin)
    if usage:
        u = {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}
        parts.append(_event({**base, "choices": [], "usage": u}))
    parts.append(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    return parts


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 429: b"Too Many Requests"}


def _response(status: int, body: bytes) -> bytes:
    reason = _REASONS.get(status, b"Error")
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )


class ThreadedFakeServer:
    """A FakeServer on its own event loop in a daemon thread, for callers that run their own loop
    (the CLI, sync scripts): `with ThreadedFakeServer(plan) as server: ... server.url`."""

    def __init__(self, plan: Plan | None = None, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = FakeServer(plan, **kw)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-sse-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()

    def __enter__(self) -> FakeServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake server did not start")
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Trivially fast OpenAI-style SSE server (inferline bench).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--ttft", type=float, default=0.0, help="seconds before the first content chunk")
    p.add_argument("--itl", type=float, default=0.0, help="seconds between content chunks (a task a stream)")
    p.add_argument("--tick", type=float, default=None, help="pace every stream by one shared ticker (s)")
    args = p.parse_args(argv)
    reply = Reply(ttft_s=args.ttft, itl_s=args.itl)

    async def serve() -> None:
        server = FakeServer(lambda _: reply, host=args.host, port=args.port, tick_s=args.tick)
        await server.start()
        print(f"listening on {server.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        _run(serve())


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
