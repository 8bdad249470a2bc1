"""The embedded engine's child process, owned by the gateway: it dies with the gateway (SIGKILL included),
outlives signals sent to every process until the gateway's drain is over, and when it crashes, streams
in flight end with an error event (never a hang), new requests get an answer, and it is restarted."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from support import Proc, start_gateway, wait_until

CONFIG: dict[str, object] = {
    "server": {"shutdown_grace_s": 60, "client_stall_timeout_s": 60},
    "routing": {"load_interval_s": 0.2, "health_interval_s": 0.3},
    "models": [
        {
            "name": "smollm2",
            "backends": [
                {
                    "name": "embedded-0",
                    "kind": "embedded",
                    # one thread: llama.cpp's threads wait for each other, which collapses on a busy machine
                    "embedded": {"parallel": 2, "ctx_per_slot": 1024, "threads": 1},
                }
            ],
        }
    ],
}
LONG = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}],
    "max_tokens": 900,
    "stream": True,
    "ignore_eos": True,
}


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Proc]:
    proc = start_gateway(tmp_path, CONFIG)
    yield proc
    proc.stop()


def engine_pids(gateway_pid: int) -> list[int]:
    """The gateway's engine children (their parent is the gateway)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == gateway_pid and b"inferline.backends.engine_child" in cmd:
            found.append(int(pid))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _data_events(lines: Iterator[str], n: int | None = None) -> list[str]:
    out = []
    for line in lines:
        if line.startswith("data:"):
            out.append(line)
            if n is not None and len(out) >= n:
                break
    return out


def test_the_engine_is_a_child_process_on_loopback(gw: Proc) -> None:
    (pid,) = engine_pids(gw.proc.pid)
    assert os.getsid(pid) == pid, "the engine runs in its own session (Ctrl-C in a terminal does not reach it)"
    r = httpx.post(gw.base_url + "/chat/completions", json={**LONG, "stream": False, "max_tokens": 4}, timeout=120)
    assert r.status_code == 200, r.text
    assert f"(pid {pid}) on 127.0.0.1:" in gw.log()


def test_gateway_killed_takes_its_engine_along(gw: Proc) -> None:
    (pid,) = engine_pids(gw.proc.pid)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(10)
    wait_until(lambda: not alive(pid), timeout=15)


def test_engine_crash_ends_streams_with_an_error_event_then_it_restarts(gw: Proc) -> None:
    (pid,) = engine_pids(gw.proc.pid)
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", gw.base_url + "/chat/completions", json=LONG) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        _data_events(lines, 3)
        os.kill(pid, signal.SIGKILL)
        rest = _data_events(lines)  # must end: the engine's connection closed with its process
    assert rest, gw.log()[-2000:]
    assert "data: [DONE]" not in rest, "a stream cut by a crash must not look complete"
    last = orjson.loads(rest[-1].removeprefix("data:"))
    assert "error" in last, rest[-1]

    # Meanwhile: an answer, never a hang (503 while the engine restarts, or 200 once it is back).
    r2 = httpx.post(gw.base_url + "/chat/completions", json={**LONG, "stream": False, "max_tokens": 2}, timeout=120)
    assert r2.status_code in (200, 503), r2.text

    # /ready may still say 200 for one health interval after the crash: wait for the new child, then ready
    wait_until(lambda: [p for p in engine_pids(gw.proc.pid) if p != pid], timeout=120, interval=0.2)
    wait_until(lambda: httpx.get(gw.url + "/ready", timeout=5).status_code == 200, timeout=120, interval=0.2)
    (new_pid,) = engine_pids(gw.proc.pid)
    assert new_pid != pid
    r3 = httpx.post(gw.base_url + "/chat/completions", json={**LONG, "stream": False, "max_tokens": 4}, timeout=120)
    assert r3.status_code == 200, r3.text
    log = gw.log()
    assert f"(pid {pid}) died (killed by SIGKILL)" in log and "restarted" in log


def test_engine_outlives_sigterm_to_every_process_until_the_drain_ends(gw: Proc) -> None:
    """systemd's default stop (and `kill -TERM -PGID`) signals every process at once: the engine must keep
    serving the streams the gateway is draining, and stop once the gateway has finished."""
    (pid,) = engine_pids(gw.proc.pid)
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", gw.base_url + "/chat/completions", json={**LONG, "max_tokens": 24}) as r,
    ):
        lines = r.iter_lines()
        _data_events(lines, 2)
        gw.proc.send_signal(signal.SIGTERM)
        os.kill(pid, signal.SIGTERM)
        rest = _data_events(lines)
    assert rest[-1] == "data: [DONE]", "a stream in flight at SIGTERM completes normally"
    assert gw.proc.wait(30) == 0
    wait_until(lambda: not alive(pid), timeout=15)
