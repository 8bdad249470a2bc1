"""The SSE decoder: events split anywhere across reads, CRLF, multi-line data, comments, size cap."""

from __future__ import annotations

import pytest

from inferline.client import StreamError
from inferline.client._sse import SSEDecoder

STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"a":1}\n\n'
    b"event: message\r\n"
    b'data: {"b":\r\n'
    b"data: 2}\r\n"
    b"id: 7\r\n"
    b"\r\n"
    b"data:[DONE]\n\n"
)
EXPECTED = [b'{"a":1}', b'{"b":\n2}', b"[DONE]"]


def test_whole_stream_in_one_read() -> None:
    assert SSEDecoder().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11])
def test_any_split_across_reads_gives_the_same_events(size: int) -> None:
    decoder = SSEDecoder()
    out: list[bytes] = []
    for i in range(0, len(STREAM), size):
        out += decoder.feed(STREAM[i : i + size])
    assert out == EXPECTED
    assert decoder.pending_bytes() == 0


def test_an_unfinished_event_is_pending_not_emitted() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a":1}\n') == []
    assert decoder.pending_bytes() > 0
    assert decoder.feed(b"\n") == [b'{"a":1}']


def test_an_oversized_event_is_a_stream_error_not_unbounded_memory() -> None:
    decoder = SSEDecoder(max_event_bytes=1024)
    with pytest.raises(StreamError, match="exceeded 1024 bytes"):
        for _ in range(100):
            decoder.feed(b"data: " + b"x" * 100)
