"""`inferline serve` against hostile clients, over real sockets: hundreds of half-open connections do not
stop normal streaming requests, and they are answered 408 and closed once header_timeout_s passes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from support import sim_config, start_gateway, start_sim, wait_until

HALF_OPEN = 300
PARTIAL = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-slow: "


def test_slowloris_does_not_stop_normal_requests(tmp_path: Path) -> None:
    sim = start_sim(tmp_path, "--profile", "instant")
    # 8 s: longer than the normal requests below take even on a loaded machine, short enough for a test
    gw = start_gateway(tmp_path, sim_config(sim.url, server={"header_timeout_s": 8}))
    host, port = gw.url.removeprefix("http://").split(":")
    held: list[socket.socket] = []
    try:
        opened = time.monotonic()
        for _ in range(HALF_OPEN):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(PARTIAL)  # a head that never ends
            s.setblocking(False)  # (a socket with a timeout would wait in recv despite MSG_DONTWAIT)
            held.append(s)
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 16,
            "stream": True,
        }
        with httpx.Client(timeout=30) as c:
            for _ in range(20):
                with c.stream("POST", gw.base_url + "/chat/completions", json=body) as r:
                    assert r.status_code == 200
                    assert [ln for ln in r.iter_lines() if ln.startswith("data:")][-1] == "data: [DONE]"
        served_within = time.monotonic() - opened
        if served_within < 6:  # the normal requests were served while every half-open connection still sat there
            assert all(_open(s) for s in held)
        # ... and then the bound: each half-open connection is answered 408 and closed
        wait_until(lambda: not any(_open(s) for s in held), timeout=60, interval=0.5)
        answers = [s.recv(200) for s in held]  # readable now: no wait
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers)
        wait_until(lambda: "request headers not complete within server.header_timeout_s" in gw.log(), timeout=10)
    finally:
        for s in held:
            s.close()
        gw.stop()
        sim.stop()


def _open(s: socket.socket) -> bool:
    """Nothing to read yet (a 408 or an EOF would be readable)."""
    try:
        s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False
