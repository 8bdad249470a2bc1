"""Send one streaming request and record its timeline: one perf_counter() per network read.

SSE events are scanned as bytes: an event counts as a content chunk when its `content`
(`reasoning_content`, `reasoning`; `text` for completions) is a non-empty string. JSON is parsed
only for an error event and, once at the end, for the last event that carried a usage object.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from inferline.bench.record import ErrorKind, RequestRecord

CHAT_KEYS = (b'"content"', b'"reasoning_content"', b'"reasoning"')
COMPLETION_KEYS = (b'"text"',)
_DONE = b"[DONE]"
_QUOTE = ord('"')
_SKIP = frozenset(b" \t\r\n:")
# Servers that close a keep-alive connection after a streamed response without saying so (llama.cpp's
# server announces `Keep-Alive: timeout=5` and then closes) make the next request on that pooled
# connection fail before any byte comes back. Like urllib3 and httpx, send it again on another
# connection; send_s stays the first attempt's, so the retry's cost is in the latencies.
STALE_RETRIES = 4  # each failed try drops one dead pooled connection; several can be dead at once


def _stale_connection(exc: BaseException) -> bool:
    """The request died on an already-open connection before any response (not a refused connect)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False  # the connect itself failed: the server is down, not a stale connection
    return isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)


def has_content(payload: bytes, keys: tuple[bytes, ...]) -> bool:
    """True when one of the keys maps to a non-empty JSON string (bytes scan, no parsing)."""
    n = len(payload)
    for key in keys:
        i = payload.find(key)
        while i >= 0:
            j = i + len(key)
            while j < n and payload[j] in _SKIP:
                j += 1
            if j + 1 < n and payload[j] == _QUOTE and payload[j + 1] != _QUOTE:
                return True
            i = payload.find(key, j)
    return False


def _has_object(payload: bytes, key: bytes) -> bool:
    i = payload.find(key)
    if i < 0:
        return False
    j, n = i + len(key), len(payload)
    while j < n and payload[j] in _SKIP:
        j += 1
    return j < n and payload[j] == ord("{")


class StreamClient:
    """Shares one aiohttp session; `t0` is the run's perf_counter origin."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, chat: bool, t0: float) -> None:
        self.session = session
        self.url = url
        self.keys = CHAT_KEYS if chat else COMPLETION_KEYS
        self.t0 = t0

    async def send(self, rec: RequestRecord, body: bytes) -> None:
        """Fill `rec` in; never raises except CancelledError (after marking the record cancelled)."""
        clock, t0 = time.perf_counter, self.t0
        rec.send_s = clock() - t0
        for attempt in range(STALE_RETRIES + 1):
            started = False
            try:
                async with self.session.post(self.url, data=body) as resp:
                    rec.status = resp.status
                    if resp.status != 200:
                        detail = await resp.content.read(1024)
                        rec.fail(ErrorKind.HTTP, clock() - t0, detail.decode("utf-8", "replace"), resp.status)
                        return
                    started = True
                    await self._read(rec, resp)
                    return
            except asyncio.CancelledError:
                rec.fail(ErrorKind.CANCELLED, clock() - t0)
                raise
            except TimeoutError:
                rec.fail(ErrorKind.TIMEOUT, clock() - t0)
            except aiohttp.ClientPayloadError as exc:
                rec.fail(ErrorKind.TRUNCATED, clock() - t0, repr(exc))
            except (aiohttp.ClientConnectionError, OSError) as exc:
                if not started and attempt < STALE_RETRIES and _stale_connection(exc):
                    continue  # a pooled keep-alive connection the server had closed: again on another one
                kind = ErrorKind.TRUNCATED if started else ErrorKind.CONNECT
                rec.fail(kind, clock() - t0, repr(exc))
            except aiohttp.ClientError as exc:
                rec.fail(ErrorKind.CLIENT, clock() - t0, repr(exc))
            return

    async def _read(self, rec: RequestRecord, resp: aiohttp.ClientResponse) -> None:
        clock, t0, keys = time.perf_counter, self.t0, self.keys
        chunks = rec.chunk_s
        pending = b""
        done = False
        error_event = False
        usage: bytes | None = None
        async for data in resp.content.iter_any():
            now = clock() - t0
            if pending:
                data = pending + data
            lines = data.split(b"\n")
            pending = lines.pop()
            for line in lines:
                if not line.startswith(b"data:"):
                    if line.startswith(b"event:") and b"error" in line:
                        error_event = True
                    continue
                payload = line[5:].strip()
                if has_content(payload, keys):
                    chunks.append(now)
                elif payload == _DONE:
                    done = True
                    continue
                elif error_event or payload.startswith(b'{"error"') or b'"object":"error"' in payload:
                    rec.fail(ErrorKind.STREAM_ERROR, now, payload.decode("utf-8", "replace"))
                    return
                if b'"usage"' in payload and _has_object(payload, b'"usage"'):
                    usage = payload  # parsed once, after the stream: the last one wins
        end = clock() - t0
        if usage is not None:
            rec.usage_output_tokens, prompt = _usage(usage)
            if prompt is not None:
                rec.prompt_tokens = prompt
        if not done:
            rec.fail(ErrorKind.TRUNCATED, end, "stream ended without data: [DONE]")
        elif not chunks:
            rec.fail(ErrorKind.EMPTY, end, "stream had no content")
        else:
            rec.end_s = end


def _usage(payload: bytes) -> tuple[int | None, int | None]:
    try:
        u = orjson.loads(payload).get("usage") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None, None
    out, inp = u.get("completion_tokens"), u.get("prompt_tokens")
    return (out if isinstance(out, int) else None), (inp if isinstance(inp, int) else None)
