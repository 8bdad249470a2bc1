"""The real openai SDK against the simulator: stream chunks parse, usage is reported, errors map by status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from inferline.sim import SimFleet


@pytest.fixture
async def client() -> AsyncIterator[openai.AsyncOpenAI]:
    async with SimFleet("instant") as fleet:
        sdk = openai.AsyncOpenAI(base_url=fleet.urls[0] + "/v1", api_key="sim", max_retries=0)
        try:
            yield sdk
        finally:
            await sdk.close()


async def test_chat_stream_parses_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count to ten."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, reasons, usage, roles = [], [], None, []
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk" and chunk.model == "smollm2"
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
            continue
        choice = chunk.choices[0]
        if choice.delta.role:
            roles.append(choice.delta.role)
        if choice.delta.content:
            text.append(choice.delta.content)
        if choice.finish_reason:
            reasons.append(choice.finish_reason)
    assert roles == ["assistant"] and len(text) == 12 and reasons == ["length"]
    assert usage is not None and usage.completion_tokens == 12
    assert usage.total_tokens == usage.prompt_tokens + 12 and usage.prompt_tokens > 0


async def test_completion_stream_and_non_stream(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=7, stream=True)
    pieces = [c.choices[0].text async for c in stream if c.choices]
    assert len(pieces) == 7
    done = await client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=7)
    assert done.choices[0].finish_reason == "length" and done.usage is not None
    assert done.usage.completion_tokens == 7 and len(done.choices[0].text.split()) == 7


async def test_chat_non_stream_with_max_completion_tokens(client: openai.AsyncOpenAI) -> None:
    done = await client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_completion_tokens=4
    )
    assert done.object == "chat.completion" and done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content and done.usage is not None and done.usage.completion_tokens == 4


async def test_errors_map_to_sdk_exceptions(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], extra_body={"priority": 2}
        )
    assert "Priority scheduling is not enabled" in bad.value.message
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="other", messages=[{"role": "user", "content": "Hi"}])
    models = await client.models.list()
    assert [m.id for m in models.data] == ["smollm2"]
