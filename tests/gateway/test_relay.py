"""relay's per-chunk fast path: it may only skip parsing, never change what is accounted or relayed."""

from __future__ import annotations

import orjson
import pytest

from inferline.gateway.relay import _chunk_has_token, _is_plain_token

# Chunks as each engine writes them (compact JSON), recorded from vLLM 0.32, llama.cpp and a text completion.
VLLM = (
    b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]}'
)
LLAMACPP = (
    b'{"choices":[{"finish_reason":null,"index":0,"delta":{"content":" there"}}],'
    b'"created":1,"id":"c","model":"m","object":"chat.completion.chunk"}'
)
TEXT = (
    b'{"id":"c","object":"text_completion","created":1,"model":"m",'
    b'"choices":[{"index":0,"text":"abc","logprobs":null,"finish_reason":null}]}'
)


@pytest.mark.parametrize("payload", [VLLM, LLAMACPP, TEXT])
def test_plain_token_chunks_take_the_fast_path_and_agree_with_parsing(payload: bytes) -> None:
    assert _is_plain_token(payload)
    assert _chunk_has_token(orjson.loads(payload)) == (True, None)


@pytest.mark.parametrize(
    "payload",
    [
        VLLM.replace(b'"finish_reason":null', b'"finish_reason":"length"'),  # the finish must be accounted
        VLLM.replace(b'"content":"Hi"', b'"content":""'),  # no token
        VLLM.replace(b'"content":"Hi"', b'"role":"assistant","content":null'),  # role chunk
        VLLM[:-1] + b',"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}',  # usage
        b'{"error":{"message":"boom","type":"internal_error","code":500}}',  # in-band error
        VLLM.replace(b'"finish_reason":null', b'"finish_reason": null'),  # other spacing: parse to be sure
        b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]},'
        b'"finish_reason":null}]}',
    ],
)
def test_everything_else_is_parsed(payload: bytes) -> None:
    assert not _is_plain_token(payload)


def test_sse_framing_across_reads_and_line_endings() -> None:
    from inferline.backends.openai_http import split_sse

    batch, tail = split_sse(b"", b'data: {"a":1}\n\ndata: {"b"')
    assert batch == [b'{"a":1}'] and tail == b'data: {"b"'
    batch, tail = split_sse(tail, b":2}\r\n\r\n: keep-alive comment\nevent: x\ndata:[DONE]\n\n")
    assert batch == [b'{"b":2}', b"[DONE]"] and tail == b""
