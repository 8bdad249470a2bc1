"""A closed-loop streaming load generator cheap enough to saturate a proxy on the same 2 cores (not a benchmark).

inferline.bench (aiohttp, one record per chunk) costs ~0.4-0.6 ms of CPU per streamed request here: on
a 2-core machine shared with the engine and the proxy, it saturates the machine before a fast proxy
saturates. This one keeps C keep-alive connections busy with raw asyncio protocols and httptools:
one write per request, the response parsed in C, per request only its status, its first content
byte (TTFT), its end (E2E) and whether it ended with `data: [DONE]`. Measured here: ~40-60 µs of CPU
per 16-chunk request, so the proxy under test, not the generator, is what saturates.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httptools
import numpy as np


@dataclass
class Stats:
    completed: int = 0
    all_completed: int = 0  # warm-up included
    errors: dict[str, int] = field(default_factory=dict)
    ttft_s: list[float] = field(default_factory=list)
    e2e_s: list[float] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class _Conn(asyncio.Protocol):
    def __init__(self, gen: _Gen) -> None:
        self.gen = gen
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.t0 = 0.0
        self.first = 0.0
        self.tail = b""
        self.status = 0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        if self.gen.stopping or self.transport is None:
            if self.transport is not None:
                self.transport.close()
            return
        self.t0 = time.perf_counter()
        self.first = 0.0
        self.tail = b""
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.stats.error("malformed")
            assert self.transport is not None
            self.transport.close()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.first and b'"content":"' in body:
            self.first = time.perf_counter()
        self.tail = (self.tail + body)[-32:]

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        st = self.gen.stats
        if self.status == 200:
            st.all_completed += 1
        if not self.gen.counting:
            pass
        elif self.status != 200:
            st.error(f"http_{self.status}")
        elif b"data: [DONE]" not in self.tail:
            st.error("truncated")
        else:
            st.completed += 1
            st.e2e_s.append(now - self.t0)
            st.ttft_s.append((self.first or now) - self.t0)
        if self.parser.should_keep_alive():
            self.send()
        else:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.gen.stopping:
            self.gen.stats.error("disconnected")
        if not self.lost.done():
            self.lost.set_result(None)


class _Gen:
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.stats = Stats()
        self.stopping = False
        self.counting = False


def chat_request(host: str, port: int, model: str, prompt_words: int, tokens: int, api_key: str | None) -> bytes:
    import orjson

    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": " ".join(["hello"] * prompt_words)}],
            "max_tokens": tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    auth = f"authorization: Bearer {api_key}\r\n".encode() if api_key else b""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n".encode()
        + auth
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def run(
    url: str,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    model: str = "smollm2",
    prompt_words: int = 48,
    tokens: int = 16,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Keep `concurrency` streams going for warmup_s + duration_s; counts only the last duration_s."""
    host, _, port_s = url.removeprefix("http://").partition(":")
    port = int(port_s.split("/")[0])
    gen = _Gen(chat_request(host, port, model, prompt_words, tokens, api_key))
    loop = asyncio.get_running_loop()
    conns: list[_Conn] = []
    t_start = time.perf_counter()
    for _ in range(concurrency):
        conn = _Conn(gen)
        try:
            await loop.create_connection(lambda c=conn: c, host, port)  # type: ignore[misc]
        except OSError:
            gen.stats.error("connect")
            continue
        conns.append(conn)
    await asyncio.sleep(warmup_s)
    gen.counting = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration_s)
    wall = time.perf_counter() - t0
    gen.counting = False
    gen.stopping = True
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    await asyncio.wait([c.lost for c in conns], timeout=5)
    total_wall = time.perf_counter() - t_start
    s = gen.stats
    ttft = np.array(s.ttft_s) * 1e3
    e2e = np.array(s.e2e_s) * 1e3

    def q(a: np.ndarray, p: float) -> float | None:
        return round(float(np.percentile(a, p)), 3) if len(a) else None

    return {
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "completed": s.completed,
        "errors": s.errors,
        "rps": round(s.completed / wall, 1),
        "all_completed": s.all_completed,
        "all_wall_s": round(total_wall, 3),
        "ttft_ms": {"p50": q(ttft, 50), "p99": q(ttft, 99)},
        "e2e_ms": {"p50": q(e2e, 50), "p99": q(e2e, 99)},
    }
