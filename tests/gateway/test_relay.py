"""relay: what reaches the client and what is accounted, for any mix of events and any split into reads."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from inferline.backends.pool import BackendState
from inferline.errors import StreamInterrupted
from inferline.gateway.relay import Relay, _chunk_has_token
from inferline.gateway.values import Delivery, ParsedRequest, Target

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
def test_token_chunks_of_every_engine_count_as_tokens(payload: bytes) -> None:
    assert _chunk_has_token(orjson.loads(payload)) == (True, None)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (VLLM.replace(b'"finish_reason":null', b'"finish_reason":"length"'), (True, "length")),
        (VLLM.replace(b'"content":"Hi"', b'"content":""'), (False, None)),
        (VLLM.replace(b'"content":"Hi"', b'"role":"assistant","content":null'), (False, None)),
        (b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]},"finish_reason":null}]}', (True, None)),
        (b'{"choices":[{"index":0,"delta":{"reasoning_content":"hm"},"finish_reason":null}]}', (True, None)),
        (b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}', (False, None)),
    ],
)
def test_what_is_not_a_token(payload: bytes, expected: tuple[bool, str | None]) -> None:
    assert _chunk_has_token(orjson.loads(payload)) == expected


def test_sse_framing_across_reads_and_line_endings() -> None:
    from inferline.backends.openai_http import split_sse

    batch, tail = split_sse(b"", b'data: {"a":1}\n\ndata: {"b"')
    assert batch == [b'{"a":1}'] and tail == b'data: {"b"'
    batch, tail = split_sse(tail, b":2}\r\n\r\n: keep-alive comment\nevent: x\ndata:[DONE]\n\n")
    assert batch == [b'{"b":2}', b"[DONE]"] and tail == b""


# --- the relay end to end, on random streams --------------------------------------------------------


class _Engine:
    """An UpstreamResponse whose reads are the given batches of payloads."""

    status = 200

    def __init__(self, reads: list[list[bytes]]) -> None:
        self._reads = reads
        self.finished = self.closed = False

    def event_batches(self) -> Any:
        async def gen() -> Any:
            for r in self._reads:
                yield list(r)

        return gen()

    async def read(self, limit_bytes: int) -> bytes:
        raise AssertionError("not a stream")

    async def finish(self) -> None:
        self.finished = True

    def close(self) -> None:
        self.closed = True


def _chunk(rng: random.Random, content: str) -> bytes:
    delta: dict[str, object] = {"content": content}
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    return orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})


def _stream(rng: random.Random) -> tuple[list[bytes], int]:
    """A role chunk, n tokens (some odd ones), a finish, a usage chunk, [DONE]; and n."""
    events = [b'{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}']
    n = rng.randint(1, 40)
    for i in range(n):
        kind = rng.random()
        if kind < 0.1:
            events.append(b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]},"finish_reason":null}]}')
        elif kind < 0.2:
            events.append(b'{"choices": [{"index": 0, "delta": {"content": " spaced"}, "finish_reason": null}]}')
        elif kind < 0.25:
            events.append(b'{"choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}')  # no token
            events.append(_chunk(rng, ' "quoted" \\n "finish_reason":"stop"'))
        elif kind < 0.3:  # the token events' bytes around a text, but no text and a finish in between
            shell = _chunk(rng, "TEXT").split(b"TEXT")
            events.append(shell[0] + b'"},"finish_reason":"stop","x":{"y":"' + shell[1])
        elif kind < 0.35:  # text that also appears elsewhere in the event: no shape learned from it
            events.append(_chunk(rng, rng.choice(["m", "c1", "chat.completion.chunk", "index"])))
        else:
            events.append(_chunk(rng, f" w{i}"))
    events.append(b'{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}')
    events.append(b'{"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":%d}}' % n)
    events.append(b"[DONE]")
    return events, n


def _split(rng: random.Random, events: list[bytes]) -> list[list[bytes]]:
    reads, i = [], 0
    while i < len(events):
        k = rng.randint(1, 6)
        reads.append(events[i : i + k])
        i += k
    return reads


def _relay(
    reads: list[list[bytes]], include_usage: bool, raised: list[BaseException] | None = None
) -> tuple[bytes, Delivery, BackendState, _Engine]:
    parsed = ParsedRequest("chat", "/v1/chat/completions", {}, "m", True, include_usage, 64, 7, 7)
    state = BackendState(backend=SimpleNamespace(name="e0"), model="m")  # type: ignore[arg-type]
    delivery = Delivery(arrival_ns=0, backend="e0", model="m")
    engine = _Engine(reads)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await Relay(5.0).relay(parsed, engine, Target(state, "m", 7, 64), delivery, send, [])  # type: ignore[arg-type]

    try:
        asyncio.run(run())
    except Exception as exc:
        if raised is None:
            raise
        raised.append(exc)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[0]["type"] == "http.response.start"
    assert sum(1 for m in sent if m["type"] == "http.response.body") <= len(reads)  # one send per read at most
    return body, delivery, state, engine


@pytest.mark.parametrize("include_usage", [True, False])
def test_every_event_is_relayed_as_it_came_and_every_token_counted(include_usage: bool) -> None:
    rng = random.Random(11 + include_usage)
    for _ in range(300):
        events, n = _stream(rng)
        body, delivery, state, engine = _relay(_split(rng, events), include_usage)
        kept = [e for e in events if include_usage or b'"usage"' not in e]
        assert body == b"".join(b"data: " + e + b"\n\n" for e in kept)
        assert delivery.complete and delivery.status == 200 and engine.finished and engine.closed
        tokens = sum(1 for e in events if e != b"[DONE]" and _chunk_has_token(orjson.loads(e))[0])
        assert delivery.content_chunks == tokens == state.generated_in_flight
        assert delivery.finish_reason == "length"
        assert (delivery.prompt_tokens, delivery.completion_tokens) == (7, n)


def test_an_error_event_mid_stream_ends_it_with_what_came_before_and_no_done() -> None:
    rng = random.Random(5)
    events, _ = _stream(rng)
    events = [*events[:4], b'{"error":{"message":"engine fell over"}}', *events[4:]]
    raised: list[BaseException] = []
    body, delivery, _, engine = _relay([events[:2], events[2:]], True, raised)
    assert len(raised) == 1 and isinstance(raised[0], StreamInterrupted) and "engine fell over" in str(raised[0])
    assert body == b"".join(b"data: " + e + b"\n\n" for e in events[:4])  # the error event itself: pipeline's
    assert b"[DONE]" not in body and not delivery.complete and engine.closed and not engine.finished


def test_observe_many_fills_the_histogram_as_observe_does() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from inferline.gateway.relay import _observe_many

    rng = random.Random(3)
    values = [rng.choice([0.0, 0.0, 0.0005, 0.001, 0.01, 0.5, 1.0, 2.0]) for _ in range(1000)]
    regs = CollectorRegistry(), CollectorRegistry()
    one, many = (Histogram("itl", "itl", ["m"], buckets=(0.001, 0.01, 0.1, 1.0), registry=r).labels("a") for r in regs)
    for v in values:
        one.observe(v)
    _observe_many(many, values)
    texts = [[ln for ln in generate_latest(r).decode().splitlines() if "_created" not in ln] for r in regs]
    assert texts[0] == texts[1]


def _token(text: bytes, tail: bytes = b'"x":1') -> bytes:
    return b'{"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}],%s}' % (text, tail)


ROLE = b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
STOP = b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'


@pytest.mark.parametrize(
    ("learned_from", "odd"),
    [
        # The text escaped otherwise than orjson would (\u0078 for x) and the same text once as a key: the
        # bytes around that key are not the token's, so an `error` in its place must still be seen.
        (_token(b"\\u0078"), _token(b"\\u0078", b'"error":1')),
        (_token(b"a"), _token(b"a\tb")),  # a raw control byte in the text: not JSON, so not a token
        (_token(b"a"), _token(b"a\xffb")),  # not UTF-8
    ],
)
def test_an_event_that_only_looks_like_a_token_ends_the_stream(learned_from: bytes, odd: bytes) -> None:
    events = [ROLE, _token(b"a"), learned_from, learned_from, odd, learned_from, STOP, b"[DONE]"]
    raised: list[BaseException] = []
    body, delivery, _, _ = _relay([events[:2], events[2:4], events[4:]], False, raised)
    assert len(raised) == 1 and isinstance(raised[0], StreamInterrupted), raised
    assert b"[DONE]" not in body and not delivery.complete
    assert delivery.content_chunks == 3  # the three tokens before it


def test_non_ascii_tokens_are_parsed_and_counted() -> None:
    events = [ROLE, *(_token("é{i}".replace("{i}", str(i)).encode()) for i in range(5)), STOP, b"[DONE]"]
    body, delivery, _, _ = _relay([events[:3], events[3:]], False)
    assert delivery.complete and delivery.content_chunks == 5
    assert body == b"".join(b"data: " + e + b"\n\n" for e in events)
