"""Property-based fuzzing of the SSE relay: an engine stream cut at any byte reaches the client intact.

Two levels: split_sse (the parser of the engine's stream) fed the same stream in arbitrary pieces, many
examples in-process; and end to end, a real gateway (`inferline serve`) in front of a fault engine
(split_engine.py) that cuts its stream where hypothesis says — inside `data:`, inside a multi-byte UTF-8
character, between `\\r` and `\\n`. The client must get byte-identical events and a valid ending, never a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferline.backends.openai_http import split_sse
from support import Proc, start_gateway

from .split_engine import SplitEngine, sse_body

# Text as engines send it: any unicode (multi-byte UTF-8, emoji, combining marks, newlines escaped by JSON).
deltas = st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=8)
newlines = st.sampled_from([b"\n", b"\r\n"])


def _chat_payloads(texts: list[str], with_usage: bool = True) -> list[bytes]:
    head = {"id": "chatcmpl-fuzz", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    out = [orjson.dumps({**head, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})]
    for t in texts:
        choice = {"index": 0, "delta": {"content": t}, "finish_reason": None}
        out.append(orjson.dumps({**head, "choices": [choice]}))
    out.append(orjson.dumps({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if with_usage:
        usage = {"prompt_tokens": 3, "completion_tokens": len(texts), "total_tokens": 3 + len(texts)}
        out.append(orjson.dumps({**head, "choices": [], "usage": usage}))
    return out


@st.composite
def cut_points(draw: st.DrawFn, size: int, every_byte: bool = True) -> list[int]:
    """Where the engine's reads end: anywhere; sometimes after every byte (of the whole stream in-process,
    of a 24-byte window end to end, where each read costs a real pause)."""
    cuts = draw(st.lists(st.integers(min_value=1, max_value=max(1, size - 1)), max_size=24))
    if size > 1 and draw(st.integers(0, 4)) == 0:
        if every_byte:
            return list(range(1, size))
        start = draw(st.integers(min_value=1, max_value=size - 1))
        cuts += range(start, min(size, start + 24))
    return cuts


@settings(max_examples=400, deadline=None)
@given(texts=deltas, newline=newlines, comments=st.booleans(), data=st.data())
def test_split_sse_yields_the_same_payloads_wherever_the_reads_end(
    texts: list[str], newline: bytes, comments: bool, data: st.DataObject
) -> None:
    payloads = [*_chat_payloads(texts), b"[DONE]"]
    body = sse_body(payloads, newline, comments)
    cuts = sorted(set(data.draw(cut_points(len(body)))))
    got: list[bytes] = []
    tail = b""
    start = 0
    for stop in [*cuts, len(body)]:
        batch, tail = split_sse(tail, body[start:stop])
        got.extend(batch)
        start = stop
    assert got == payloads and tail == b""


# --- end to end, through a running gateway ----------------------------------------------------------------


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SplitEngine, Proc]]:
    engine = SplitEngine().start()
    config = {
        "server": {"engine_wait_s": 30},
        "models": [{"name": "m", "backends": [{"name": "split-0", "kind": "openai", "url": engine.url}]}],
    }
    gw = start_gateway(tmp_path_factory.mktemp("fuzz-relay"), config)
    yield engine, gw
    gw.stop()
    engine.stop()


def _events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n"), body[-200:]
    events = body[:-2].split(b"\n\n")
    assert all(e.startswith(b"data: ") for e in events), events
    return [e.removeprefix(b"data: ") for e in events]


def _ask(gw: Proc, pid: str) -> httpx.Response:
    request = {
        "model": "m",
        "messages": [{"role": "user", "content": f"plan:{pid}"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return httpx.post(gw.base_url + "/chat/completions", json=request, timeout=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=deltas, newline=newlines, comments=st.booleans(), data=st.data())
def test_the_client_gets_byte_identical_events_wherever_the_engine_stream_is_cut(
    relay: tuple[SplitEngine, Proc], texts: list[str], newline: bytes, comments: bool, data: st.DataObject
) -> None:
    engine, gw = relay
    payloads = [*_chat_payloads(texts), b"[DONE]"]
    body = sse_body(payloads, newline, comments)
    pid = engine.plan(body, data.draw(cut_points(len(body), every_byte=False)))
    r = _ask(gw, pid)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert _events(r.content) == payloads  # the same bytes, in order, ending with [DONE]
    assert engine.served(pid) == 1  # no retry: nothing failed


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=6), data=st.data())
def test_an_engine_dying_mid_stream_ends_with_an_error_event_never_a_clean_done(
    relay: tuple[SplitEngine, Proc], texts: list[str], data: st.DataObject
) -> None:
    engine, gw = relay
    payloads = _chat_payloads(texts, with_usage=False)[:-1]  # no finish, no [DONE]: the engine died
    cut_inside_last = data.draw(st.booleans())
    # At least one complete token event reaches the client (else it is a failure before the first token:
    # retried, then a 502, which test_failover covers); then, maybe, a last event cut short.
    keep = data.draw(st.integers(min_value=3 if cut_inside_last else 2, max_value=len(payloads)))
    body = sse_body(payloads[:keep])
    if cut_inside_last:  # a partial line the client must never see
        body = body[: -data.draw(st.integers(min_value=3, max_value=12))]
    pid = engine.plan(body, data.draw(cut_points(len(body), every_byte=False)), end="abort")
    r = _ask(gw, pid)
    assert r.status_code == 200  # the first token was out: the failure must travel in-band
    events = _events(r.content)
    assert b"[DONE]" not in events
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "stream_interrupted", last
    complete = keep - 1 if cut_inside_last else keep
    assert events[:-1] == payloads[:complete]  # every complete event, byte-identical; nothing partial
