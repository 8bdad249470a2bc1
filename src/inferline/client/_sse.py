"""Server-sent events, sans I/O: bytes as they come off the socket in, complete `data` payloads out.

It holds at most one incomplete event (bounded by max_event_bytes), so memory does not grow with
the length of a generation. OpenAI-style streams carry everything in `data:` fields, so `event:`,
`id:` and `retry:` fields and `:` comments are skipped; lines end in LF or CRLF.
"""

from __future__ import annotations

from ._exceptions import StreamError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder"]

DEFAULT_MAX_EVENT_BYTES = 1 << 20  # one chunk of an OpenAI stream is ~0.3 KiB; 1 MiB means a broken server


class SSEDecoder:
    __slots__ = ("_buf", "_data", "_max_event_bytes")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buf = b""
        self._data: bytes | None = None
        self._max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data payloads of every event completed by `chunk` (multi-line data joined with LF)."""
        if not self._buf and self._data is None and chunk[:6] == b"data: " and chunk[-2:] == b"\n\n":
            # The common case on a live stream: a read holding exactly one single-line event.
            payload = chunk[6:-2]
            if b"\n" not in payload:
                return [payload]
        buf = self._buf + chunk if self._buf else chunk
        out: list[bytes] = []
        pos = 0
        find = buf.find
        nl = find(b"\n")
        while nl >= 0:
            line = buf[pos:nl] if buf[nl - 1 : nl] != b"\r" else buf[pos : nl - 1]
            pos = nl + 1
            if not line:
                if self._data is not None:
                    out.append(self._data)
                    self._data = None
            elif line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._data = value if self._data is None else self._data + b"\n" + value
            nl = find(b"\n", pos)
        self._buf = buf[pos:] if pos else buf
        pending = len(self._buf) + (len(self._data) if self._data is not None else 0)
        if pending > self._max_event_bytes:
            raise StreamError(f"an SSE event exceeded {self._max_event_bytes} bytes", transient=False)
        return out

    def pending_bytes(self) -> int:
        """Bytes held for an event not yet complete: nonzero at end of stream means it was cut off."""
        return len(self._buf) + (len(self._data) if self._data is not None else 0)
