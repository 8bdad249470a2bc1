"""Every admitted request ends as a complete answer, an explicit error, or a cancellation the client asked for."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import httpx
import orjson
import pytest

from support import (
    EMBEDDED_CONFIG,
    Proc,
    backend_running,
    sim_config,
    start_gateway,
    start_sim,
    wait_until,
)

LONG = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}],
    "max_tokens": 900,
    "stream": True,
    "ignore_eos": True,  # llama.cpp: generate exactly max_tokens, so the stream cannot end early by chance
}


def _read_events(lines: object, n: int) -> list[bytes]:
    events = []
    for line in lines:  # type: ignore[attr-defined]
        if line.startswith("data:"):
            events.append(line)
            if len(events) >= n:
                break
    return events


# Waits for events (an engine going idle) are generous: the suite must pass on a busy machine. What shows
# that the engine stopped because the client left, rather than finished, is its token count, not a clock.
# How fast the slot is freed is measured by benchmarks/cancel_latency.py.
EVENT_DEADLINE_S = 60.0


def _tokens_predicted(gateway: Proc) -> int:
    """llamacpp:tokens_predicted_total of the gateway's embedded engine (its own port, named in the log)."""
    m = re.search(r"embedded engine embedded-0: llama\.cpp (?:\(pid \d+\) )?on 127\.0\.0\.1:(\d+)", gateway.log())
    assert m is not None, "the gateway did not log its embedded engine's port"
    text = httpx.get(f"http://127.0.0.1:{m.group(1)}/metrics", timeout=10).text
    value = re.search(r"^llamacpp:tokens_predicted_total (\S+)$", text, re.MULTILINE)
    assert value is not None
    return int(float(value.group(1)))


def test_disconnect_cancels_the_engine_work(gateway: Proc) -> None:
    wait_until(lambda: backend_running(gateway.url, "embedded-0") == 0, timeout=EVENT_DEADLINE_S)
    before = _tokens_predicted(gateway)
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", gateway.base_url + "/chat/completions", json=LONG) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()  # kept referenced: a collected httpx line iterator closes the response
        _read_events(lines, 5)
        # the engine's own count, as the gateway polls it (every 0.1 s; slower when the engine is busy)
        wait_until(lambda: (backend_running(gateway.url, "embedded-0") or 0) >= 1, timeout=EVENT_DEADLINE_S)
    # the connection is closed: the engine's running count (polled every 0.1 s) must drop to 0...
    wait_until(lambda: backend_running(gateway.url, "embedded-0") == 0, timeout=EVENT_DEADLINE_S, interval=0.02)
    # ...because the sequence was aborted: it generated far fewer than its max_tokens (ignore_eos: it cannot
    # stop early by itself).
    generated = _tokens_predicted(gateway) - before
    assert generated < LONG["max_tokens"], f"the engine generated {generated} tokens: it ran to max_tokens"
    assert '"outcome":"client_cancelled"' in gateway.log()


def test_stalled_client_gets_cancelled(tmp_path: Path) -> None:
    """A client that stops reading is cut off after client_stall_timeout_s, and the engine's slot is freed.

    The engine is the simulator (fast and steady on a loaded machine): the mechanism under test is the
    gateway's bounded send path, not the model.
    """
    sim = start_sim(tmp_path, "--profile", "cpu-smollm2", "--time-scale", "0.2")
    gw = start_gateway(
        tmp_path,
        sim_config(
            sim.url,
            server={"client_stall_timeout_s": 1, "send_buffer_bytes": 8192},
            routing={"load_interval_s": 0.1},
        ),
    )
    try:
        host, gw_port = gw.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills the pipe quickly
        sock.connect((host, int(gw_port)))
        body = orjson.dumps({**LONG, "max_tokens": 1900})  # ~400 KB of SSE: more than the bounded path holds
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sock.recv(100)  # the stream started; now never read again
        waited = wait_until(lambda: '"outcome":"client_stalled"' in gw.log(), timeout=60, interval=0.2)
        # the engine's slot is freed although the client never closed its socket
        wait_until(lambda: backend_running(gw.url, "sim-0") == 0, timeout=EVENT_DEADLINE_S)
        assert waited < 30
        sock.close()
    finally:
        gw.stop()
        sim.stop()


def test_sigterm_lets_streams_finish_within_grace(tmp_path: Path) -> None:
    cfg = dict(EMBEDDED_CONFIG)
    # A grace far longer than 40 tokens take even on a loaded machine (a few tokens/s): the stream must end
    # with [DONE] because the gateway waited for it, however slow the engine is today.
    cfg["server"] = {"shutdown_grace_s": 240}
    gw = start_gateway(tmp_path, cfg)
    try:
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", gw.base_url + "/chat/completions", json={**LONG, "max_tokens": 40}) as r,
        ):
            lines = r.iter_lines()
            _read_events(lines, 2)
            gw.proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line.startswith("data:")]
        assert rest[-1] == "data: [DONE]", "a stream in flight at SIGTERM completes normally"
        assert gw.proc.wait(EVENT_DEADLINE_S) == 0
    finally:
        gw.stop()


def test_sigterm_past_grace_ends_stream_with_error_event(tmp_path: Path) -> None:
    cfg = dict(EMBEDDED_CONFIG)
    cfg["server"] = {"shutdown_grace_s": 1}
    gw = start_gateway(tmp_path, cfg)
    try:
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", gw.base_url + "/chat/completions", json={**LONG, "max_tokens": 900}) as r,
        ):
            lines = r.iter_lines()
            _read_events(lines, 2)
            gw.proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line.startswith("data:")]
        assert rest, gw.log()[-2000:]
        last = orjson.loads(rest[-1].removeprefix("data:"))
        assert "error" in last, "the stream ends with an error event, not a clean-looking [DONE]"
        assert last["error"]["code"] == "shutting_down"
        assert "data: [DONE]" not in rest
        assert gw.proc.wait(EVENT_DEADLINE_S) == 0
    finally:
        gw.stop()


def test_output_that_would_overflow_the_context_is_rejected_not_hung(gateway: Proc) -> None:
    """llama.cpp hangs when generation fills a slot's context; the gateway must never let it."""
    r = httpx.post(
        gateway.base_url + "/chat/completions", json={**LONG, "max_tokens": 1010, "stream": False}, timeout=30
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert "ask for at most" in r.json()["error"]["message"]


@pytest.mark.timeout(900)  # a loaded machine runs the engine at a few tokens/s
def test_request_without_max_tokens_ends_within_context(gateway: Proc) -> None:
    """No max_tokens: the gateway caps output at the room left in the context, so the answer ends.

    A long prompt (997 tokens with SmolLM2's template) leaves little room in the 1024-token context: the
    cap, not the model's whim, ends the answer, and the test stays short however slow the engine is today."""
    prompt = "Tell me a long story about " + "a lighthouse keeper, " * 240
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 1.5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # Streamed, so the deadline is per chunk (the engine is alive), not for the whole answer.
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", gateway.base_url + "/chat/completions", json=body) as r,
    ):
        assert r.status_code == 200, r.read()
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = orjson.loads(events[-2])["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 1024


@pytest.mark.parametrize("path", ["/ready", "/health"])
def test_operational_endpoints(gateway: Proc, path: str) -> None:
    r = httpx.get(gateway.url + path, timeout=5)
    assert r.status_code == 200
