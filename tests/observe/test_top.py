"""`inferline top` against a real gateway in front of a simulated fleet under `inferline bench` load, and its
one-line answers for a wrong URL."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import INFERLINE, Proc, free_port, start_gateway, start_sim


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc]]:
    tmp = tmp_path_factory.mktemp("top")
    sim = start_sim(tmp, "--profile", "h100-llama8b", "--count", "2", "--max-num-seqs", "4", name="sim")
    port = int(sim.url.rsplit(":", 1)[1])
    cfg = {
        "routing": {"load_interval_s": 0.1, "health_interval_s": 0.5},
        "models": [
            {
                "name": "smollm2",
                "backends": [
                    {"name": f"sim-{i}", "kind": "vllm", "url": f"http://127.0.0.1:{port + i}", "max_num_seqs": 4}
                    for i in range(2)
                ],
            }
        ],
    }
    try:
        gateway = start_gateway(tmp, cfg)
    except BaseException:
        sim.stop()
        raise
    yield gateway, sim
    gateway.stop()
    sim.stop()


def top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERLINE, "top", *args], capture_output=True, text=True, timeout=60)


def test_once_prints_one_frame_with_every_backend_hottest_first(fleet: tuple[Proc, Proc], tmp_path: Path) -> None:
    gateway, _ = fleet
    log = (tmp_path / "bench.log").open("wb")
    load = subprocess.Popen(
        [INFERLINE, "bench", "--url", gateway.url, "--no-progress", "--duration", "60", "--concurrency", "12",
         "--input-len", "100", "--output-len", "100", "--ignore-eos"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:  # until requests have finished on the engines, so rates and TTFT have data
            out = top("--url", gateway.url, "--once", "--interval", "2")
            assert out.returncode == 0, out.stderr
            if "req/s" in out.stdout and " ms " in out.stdout:
                break
            assert time.monotonic() < deadline, out.stdout
    finally:
        load.send_signal(signal.SIGINT)
        load.wait(30)
    frame = out.stdout
    print("\n" + frame)
    lines = frame.splitlines()
    assert lines[0].startswith("inferline top " + gateway.url)
    assert any(line.startswith("smollm2") and "2 ready" in line for line in lines)
    rows = [line for line in lines if line.lstrip("▶ ").startswith("sim-")]
    assert len(rows) == 2 and rows[0].startswith("▶ sim-") and not rows[1].startswith("▶")
    assert all("yes" in r and "%" in r for r in rows)  # ready, KV use
    assert "Traceback" not in frame + out.stderr


def test_unreachable_url_is_one_line_and_exit_1() -> None:
    out = top("--url", f"http://127.0.0.1:{free_port()}", "--once")
    assert out.returncode == 1
    assert out.stdout == "" and out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: cannot reach http://127.0.0.1:") and "Traceback" not in out.stderr


def test_a_url_that_is_not_a_gateway_is_one_line(fleet: tuple[Proc, Proc]) -> None:
    _, sim = fleet  # an engine: /metrics without any inferline_* series
    out = top("--url", sim.url, "--once")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "has no inferline_* series" in out.stderr
    out = top("--url", sim.url + "/nothing-here", "--once")
    assert out.returncode == 1 and out.stderr.strip() == f"error: {sim.url}/nothing-here/metrics answered HTTP 404"


@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_live_view_refreshes_and_quits_cleanly_on_q_and_ctrl_c(fleet: tuple[Proc, Proc], key: bytes) -> None:
    import os
    import pty

    gateway, _ = fleet
    pid, fd = pty.fork()
    if pid == 0:  # the child: `inferline top` on a terminal
        os.execv(INFERLINE, [INFERLINE, "top", "--url", gateway.url, "--interval", "0.2"])
    screen = b""
    done = 0
    try:
        deadline = time.monotonic() + 30
        while screen.count(b"inferline top") < 3:  # the header is drawn again on each refresh
            assert time.monotonic() < deadline, screen.decode(errors="replace")
            try:
                screen += os.read(fd, 65536)
            except OSError:
                break
        os.write(fd, key)
        deadline = time.monotonic() + 15
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, (
                "inferline top did not exit:\n" + screen.decode(errors="replace")[-2000:]
            )
            try:
                screen += os.read(fd, 65536)
            except OSError:
                time.sleep(0.05)
    finally:
        os.close(fd)
        if not done:  # a failed assertion above: do not leave it running
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert b"sim-0" in screen and b"Traceback" not in screen
