"""A scripted OpenAI-compatible server on a loopback port, for retry, timeout and fault tests.

Each request takes the next step of `script` (a normal three-chunk stream when it is empty) and is
recorded with its body and arrival time. It runs aiohttp on its own event loop in a thread, so the
blocking Client and the AsyncClient can both talk to it from the test's thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Reply:
    """A plain (non-stream) answer, e.g. an error: status, JSON (or raw bytes) body, headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sse:
    """An event stream: a role chunk, one chunk per delta, then `end`.

    end: "done" (finish chunk, usage chunk, [DONE]), "eof" (the body ends cleanly without [DONE]),
    "drop" (the connection is cut mid-body), "error" (an SSE error event, then the body ends),
    "stall" (nothing more until the client goes away).
    """

    deltas: list[str]
    end: str = "done"
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None  # (prompt, completion); default (7, len(deltas))
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    usage_every_chunk: bool = False  # like vLLM's stream_options.continuous_usage_stats
    headers_delay_s: float = 0.0  # before the response headers
    first_delay_s: float = 0.0  # after the headers, before the first delta
    delay_s: float = 0.0  # between deltas


@dataclass
class Firehose:
    """Delta chunks as fast as the socket takes them, `n` of them (None: until the client leaves)."""

    n: int | None = None
    delta: str = "x"


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    t: float
    peer: tuple[str, int] | None = None  # the client's address: the same one means a reused connection


Step = Reply | Sse | Firehose


class FaultServer:
    def __init__(self) -> None:
        self.script: deque[Step] = deque()
        self.requests: list[Recorded] = []
        self.bytes_written = 0  # body bytes the server's writes have handed to the socket
        self.disconnected_at: float | None = None  # when a stream noticed the client had gone
        self.finished_at: float | None = None  # when a stream ended on its own
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-server", daemon=True)
        self.port = 0
        self.firehose_by_max_tokens = False  # with an empty script: stream max_tokens chunks at full speed
        # Bumped by reset(): a handler left over from an earlier test (e.g. one still sleeping in a delay
        # its client timed out of) must not report its late disconnect as the current test's event.
        self._epoch = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self, *steps: Step) -> None:
        self._epoch += 1
        self.script = deque(steps)
        self.requests = []
        self.bytes_written = 0
        self.disconnected_at = None
        self.finished_at = None

    def _mark_disconnected(self, epoch: int) -> None:
        if epoch == self._epoch:
            self.disconnected_at = time.monotonic()

    def _mark_finished(self, epoch: int) -> None:
        if epoch == self._epoch:
            self.finished_at = time.monotonic()

    def wait_disconnected(self, within_s: float = 1.0) -> float | None:
        """Seconds until a stream saw its client leave (polling from the caller's thread); None if not."""
        t0 = time.monotonic()
        while self.disconnected_at is None and time.monotonic() - t0 < within_s:
            time.sleep(0.005)
        return None if self.disconnected_at is None else max(0.0, self.disconnected_at - t0)

    def start(self) -> FaultServer:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fault server did not start")
        return self

    def stop(self) -> None:
        async def _shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            # Handlers still sleeping in a long scripted delay (their clients timed out long ago): end them,
            # so the loop closes without "Task was destroyed but it is pending".
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/completions", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.1)
        self._loop.run_until_complete(site.start())
        server = site._server
        assert isinstance(server, asyncio.Server) and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Recorded(request.path, body, dict(request.headers), time.monotonic(), peer))
        if self.script:
            step = self.script.popleft()
        elif self.firehose_by_max_tokens:
            step = Firehose(n=body.get("max_tokens"))
        else:
            step = Sse(["one", " two", " three"])
        chat = request.path.endswith("chat/completions")
        if isinstance(step, Reply):
            raw = step.body if isinstance(step.body, bytes) else orjson.dumps(step.body)
            return web.Response(
                status=step.status, body=raw, headers={"content-type": "application/json", **step.headers}
            )
        if isinstance(step, Firehose):
            return await self._firehose(request, step, chat)
        return await self._stream(request, step, chat)

    async def _open(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", **headers})
        await resp.prepare(request)
        return resp

    async def _write(self, resp: web.StreamResponse, data: bytes) -> None:
        await resp.write(data)
        self.bytes_written += len(data)

    async def _stream(self, request: web.Request, step: Sse, chat: bool) -> web.StreamResponse:
        epoch = self._epoch
        if step.headers_delay_s:
            await asyncio.sleep(step.headers_delay_s)
        resp = await self._open(request, step.headers)
        try:
            if chat:
                await self._write(resp, _event({"choices": [_choice(chat, None, role=True)]}))
            if step.first_delay_s:
                await asyncio.sleep(step.first_delay_s)
            for i, delta in enumerate(step.deltas):
                if i and step.delay_s:
                    await asyncio.sleep(step.delay_s)
                event: dict[str, Any] = {"choices": [_choice(chat, delta)]}
                if step.usage_every_chunk:
                    event["usage"] = {"prompt_tokens": 7, "completion_tokens": i + 1, "total_tokens": i + 8}
                await self._write(resp, _event(event))
            if step.end == "done":
                prompt, completion = step.usage or (7, len(step.deltas))
                usage = {"prompt_tokens": prompt, "completion_tokens": completion}
                usage["total_tokens"] = prompt + completion
                await self._write(resp, _event({"choices": [_choice(chat, None, step.finish_reason)]}))
                await self._write(resp, _event({"choices": [], "usage": usage}))
                await self._write(resp, b"data: [DONE]\n\n")
            elif step.end == "drop":
                transport = request.transport
                assert transport is not None
                transport.abort()  # cut mid-body: the client sees an incomplete chunked message
                return resp
            elif step.end == "error":
                err = step.error or {"message": "engine died", "type": "upstream_error", "code": 502}
                await self._write(resp, _event({"error": err}))
            elif step.end == "stall":
                await _until_disconnected(request)
                self._mark_disconnected(epoch)
                return resp
            await resp.write_eof()
            self._mark_finished(epoch)
        except ConnectionError:  # the client left: what the cancellation tests wait for
            self._mark_disconnected(epoch)
        except asyncio.CancelledError:
            self._mark_disconnected(epoch)
            raise
        return resp

    async def _firehose(self, request: web.Request, step: Firehose, chat: bool) -> web.StreamResponse:
        epoch = self._epoch
        resp = await self._open(request, {})
        chunk = _event({"choices": [_choice(chat, step.delta)]})
        try:
            i = 0
            while step.n is None or i < step.n:
                await self._write(resp, chunk)
                i += 1
            await self._write(resp, _event({"choices": [_choice(chat, None, "length")]}))
            usage = {"prompt_tokens": 1, "completion_tokens": i, "total_tokens": i + 1}
            await self._write(resp, _event({"choices": [], "usage": usage}))
            await self._write(resp, b"data: [DONE]\n\n")
            await resp.write_eof()
            self._mark_finished(epoch)
        except ConnectionError:  # the client left: what the cancellation tests wait for
            self._mark_disconnected(epoch)
        except asyncio.CancelledError:
            self._mark_disconnected(epoch)
            raise
        return resp


def _choice(chat: bool, text: str | None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": None} if role else {}
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "finish_reason": finish}
    return {"index": 0, "text": text or "", "finish_reason": finish}


def _event(obj: dict[str, Any]) -> bytes:
    obj.setdefault("object", "chat.completion.chunk")
    obj.setdefault("model", "fault")
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def _until_disconnected(request: web.Request) -> None:
    transport = request.transport
    # aiohttp gives a handler no disconnect event (handler cancellation is off), so poll the transport.
    while transport is not None and not transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def main() -> None:
    """`python client_fault_server.py`: a firehose server in its own process (prints its URL, then serves).

    Memory tests use it so that tracemalloc in the test process sees the client's allocations only.
    """
    server = FaultServer()
    server.firehose_by_max_tokens = True
    server.start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
