"""The bytes scan that decides whether an SSE event carries content, without parsing JSON."""

from __future__ import annotations

import pytest

from inferline.bench.stream import CHAT_KEYS, COMPLETION_KEYS, has_content


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"choices":[{"index":0,"delta":{"content":"Hi"}}]}', True),
        (b'{"choices": [{"index": 0, "delta": {"content": " x"}}]}', True),  # json.dumps spacing
        (b'{"choices":[{"delta":{"role":"assistant","content":""}}]}', False),  # role event
        (b'{"choices":[{"delta":{"role":"assistant","content":null}}]}', False),
        (b'{"choices":[{"delta":{},"finish_reason":"stop"}]}', False),
        (b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}', False),
        (b'{"choices":[{"delta":{"reasoning_content":"hmm"}}]}', True),
        (b'{"choices":[{"delta":{"content":null,"reasoning":"hmm"}}]}', True),
        (b'{"choices":[{"delta":{"content":"\\"quoted\\""}}]}', True),
        (b'{"choices":[{"delta":{"content":"","tool_calls":[{"function":{"arguments":"{}"}}]}}]}', False),
    ],
)
def test_chat_content_detection(payload: bytes, expected: bool) -> None:
    assert has_content(payload, CHAT_KEYS) is expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"choices":[{"index":0,"text":"tok ","finish_reason":null}]}', True),
        (b'{"choices":[{"index":0,"text":"","finish_reason":"length"}]}', False),
        (b'{"choices":[{"text_offset":[1],"text":""}]}', False),
    ],
)
def test_completion_content_detection(payload: bytes, expected: bool) -> None:
    assert has_content(payload, COMPLETION_KEYS) is expected
