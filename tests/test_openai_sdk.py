"""The real openai SDK against a running `inferline serve` (embedded llama.cpp + SmolLM2)."""

from __future__ import annotations

import asyncio

import openai
import pytest

from support import Proc


@pytest.fixture
def client(gateway: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=60)


def test_chat_stream_reports_usage_and_finish_reason(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from one to twenty."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        seed=7,
    )
    content_chunks = 0
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
        for choice in chunk.choices:
            if choice.delta.content:
                content_chunks += 1
            finish = choice.finish_reason or finish
    assert usage is not None, "include_usage asked for a usage chunk"
    assert 1 <= usage.completion_tokens <= 12
    assert usage.prompt_tokens > 5
    assert finish in ("length", "stop")
    if finish == "length":
        assert usage.completion_tokens == 12
    assert content_chunks >= 1


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
        )
    )
    assert chunks, "stream produced chunks"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "the usage-only chunk the gateway asked for is not leaked"


def test_chat_non_stream_with_max_completion_tokens(client: openai.OpenAI) -> None:
    resp = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
        max_completion_tokens=6,
        top_p=0.9,
        stop=["\n\n"],
    )
    assert resp.headers["x-inferline-backend"] == "embedded-0"
    assert resp.headers["x-inferline-model"] == "smollm2"
    body = resp.parse()
    assert body.usage is not None and 1 <= body.usage.completion_tokens <= 6
    assert body.choices[0].finish_reason in ("length", "stop")
    assert isinstance(body.choices[0].message.content, str)


def test_text_completions_stream_and_non_stream(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=5)
    assert resp.usage is not None and resp.usage.completion_tokens <= 5
    assert resp.choices[0].finish_reason in ("length", "stop")
    texts = []
    usage = None
    for chunk in client.completions.create(
        model="smollm2",
        prompt="Once upon a time",
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage:
            usage = chunk.usage
        texts.extend(c.text for c in chunk.choices)
    assert usage is not None and usage.completion_tokens <= 6
    assert "".join(texts)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["smollm2"]


async def test_eight_concurrent_streams_all_complete(gateway: Proc) -> None:
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=120)

    async def one(i: int) -> tuple[int, str | None]:
        stream = await client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": f"Tell me fact number {i} about the sea."}],
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
        tokens, finish = 0, None
        async for chunk in stream:
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
            for c in chunk.choices:
                finish = c.finish_reason or finish
        return tokens, finish

    try:
        results = await asyncio.gather(*(one(i) for i in range(8)))
    finally:
        await client.close()
    assert len(results) == 8
    for tokens, finish in results:
        assert finish in ("length", "stop")
        assert 1 <= tokens <= 24


def test_models_retrieve_and_unknown_model(client: openai.OpenAI) -> None:
    assert client.models.retrieve("smollm2").id == "smollm2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_parts_content_logprobs_and_json_mode_pass_through(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Give a JSON object with a name."}]}],
        max_tokens=12,
        logprobs=True,
        top_logprobs=2,
        response_format={"type": "json_object"},
    )
    choice = resp.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    assert (choice.message.content or "").lstrip().startswith("{")
