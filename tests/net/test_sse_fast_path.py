"""The relay's whole-read fast path accepts a read only when the per-event path would do exactly the same:
every event a plain token (by _is_plain_token) and the bytes exactly what the relay would write."""

from __future__ import annotations

import random

import orjson

from inferline.backends.base import EventBatch
from inferline.backends.openai_http import split_sse
from inferline.gateway.relay import _after, _is_plain_token, _plain_prefix


def _chunk(rng: random.Random) -> bytes:
    kind = rng.choice(["plain", "plain", "plain", "role", "finish", "usage", "error", "two", "empty", "text", "tool"])
    delta: dict[str, object] = {"content": rng.choice([" hi", ' "quoted" ', "\\n", " index", ' "index":'])}
    choice: dict[str, object] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    obj: dict[str, object] = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    if kind == "role":
        choice["delta"] = {"role": "assistant", "content": ""}
    elif kind == "finish":
        choice["finish_reason"] = "stop"
        choice["delta"] = {}
    elif kind == "usage":
        obj = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    elif kind == "error":
        obj = {"error": {"message": "boom"}}
    elif kind == "two":
        obj["choices"] = [choice, {**choice, "index": 1, "finish_reason": "length"}]
    elif kind == "empty":
        choice["delta"] = {"content": ""}
    elif kind == "text":
        obj["choices"] = [{"index": 0, "text": " t", "logprobs": None, "finish_reason": None}]
    elif kind == "tool":
        choice["delta"] = {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    return orjson.dumps(obj)


def _framing(rng: random.Random, payload: bytes) -> bytes:
    return (
        rng.choice(
            [
                b"data: %s\n\n",
                b"data: %s\n\n",
                b"data: %s\n\n",
                b"data:%s\n\n",
                b"data: %s\r\n\r\n",
                b": c\ndata: %s\n\n",
            ]
        )
        % payload
    )


def test_fast_path_only_where_the_event_path_agrees() -> None:
    rng = random.Random(7)
    accepted = 0
    for _ in range(20000):
        payloads = [_chunk(rng) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.5:
            raw = b"".join(b"data: %s\n\n" % p for p in payloads)
        else:
            raw = b"".join(_framing(rng, p) for p in payloads)
        batch, rest = split_sse(b"", raw)
        assert rest == b""
        k, prefix = _plain_prefix(raw, len(batch))
        if k:
            accepted += k
            assert all(_is_plain_token(p) for p in batch[:k])
            assert prefix == b"".join(b"data: " + p + b"\n\n" for p in batch[:k])
            assert raw.startswith(prefix)
    assert accepted > 5000  # the common case does take the fast path


def test_a_typical_last_read_forwards_its_tokens_and_parses_only_the_end() -> None:
    tok = b'{"choices":[{"index":0,"delta":{"content":" a"},"finish_reason":null}]}'
    fin = b'{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}'
    usage = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":16}}'
    events = [tok] * 14 + [fin, usage, b"[DONE]"]
    raw = b"".join(b"data: " + e + b"\n\n" for e in events)
    k, prefix = _plain_prefix(raw, len(events))
    assert k == 14 and prefix == b"data: " + tok + b"\n\n" * 1 + (b"data: " + tok + b"\n\n") * 13


def test_after_keeps_the_raw_bytes_of_the_remaining_events() -> None:
    events = [b'{"a":%d}' % i for i in range(4)]
    raw = b"".join(b"data: " + e + b"\n\n" for e in events)
    rest = _after(EventBatch(list(events), raw), 2)
    assert list(rest) == events[2:]
    assert getattr(rest, "raw", None) == b"data: " + events[2] + b"\n\ndata: " + events[3] + b"\n\n"
    odd = b": comment\n" + raw
    assert getattr(_after(EventBatch(list(events), odd), 2), "raw", None) is None  # no slicing then


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
