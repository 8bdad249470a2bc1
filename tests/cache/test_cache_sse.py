"""as_sse_chunks: a cached response replayed as a stream that the real openai SDK parses and reassembles."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import orjson
import pytest

from inferline.cache import as_sse_chunks

CHAT: dict[str, Any] = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1790000000,
    "model": "smollm2",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there, friend."},
            "logprobs": None,
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        },
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
}

COMPLETION: dict[str, Any] = {
    "id": "cmpl-xyz",
    "object": "text_completion",
    "created": 1790000000,
    "model": "smollm2",
    "choices": [{"index": 0, "text": " world", "logprobs": None, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def sdk_client(chunks: list[bytes]) -> openai.OpenAI:
    """The real openai SDK (on its own HTTP library, httpx2), its HTTP answered with our SSE bytes."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(chunks))

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://cache.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def test_the_shape_is_openai_sse_ending_with_done() -> None:
    chunks = as_sse_chunks(orjson.dumps(CHAT), "chat", include_usage=True)
    assert chunks[-1] == b"data: [DONE]\n\n"
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") for c in chunks)
    events = [orjson.loads(c[6:]) for c in chunks[:-1]]
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert {e["id"] for e in events} == {"chatcmpl-abc"}
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-1]["choices"] == [] and events[-1]["usage"] == CHAT["usage"]
    assert all(e["usage"] is None for e in events[:-1])
    assert as_sse_chunks(CHAT, "chat")[-2] != chunks[-2]  # no usage chunk unless asked


def test_chat_replay_reassembles_in_the_openai_sdk() -> None:
    client = sdk_client(as_sse_chunks(orjson.dumps(CHAT), "chat", include_usage=True))
    with client.chat.completions.stream(model="smollm2", messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_completion()
    assert final.id == "chatcmpl-abc"
    assert final.choices[0].message.content == "Hello there, friend."
    assert final.choices[0].finish_reason == "stop"
    call = final.choices[1].message.tool_calls
    assert call is not None and call[0].function.name == "get_weather"
    assert call[0].function.arguments == '{"city": "Paris"}'
    assert final.choices[1].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 17


def test_chat_replay_iterates_as_sdk_chunk_types() -> None:
    client = sdk_client(as_sse_chunks(CHAT, "chat"))
    stream = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices and c.choices[0].index == 0)
    assert text == "Hello there, friend."


def test_completion_replay_in_the_openai_sdk() -> None:
    client = sdk_client(as_sse_chunks(orjson.dumps(COMPLETION), "completions", include_usage=True))
    chunks = list(client.completions.create(model="smollm2", prompt="hello", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == " world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 1


def test_a_mismatched_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"needs a text_completion object; got 'chat\.completion'"):
        as_sse_chunks(CHAT, "completions")
