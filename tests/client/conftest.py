"""Fixtures for the client tests: a scripted fault server, and a real llama.cpp engine serving SmolLM2."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_fault_server import FaultServer

from support import free_port

ENGINE_START_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def _fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def fault(_fault_server: FaultServer) -> FaultServer:
    """The fault server with an empty script (each test sets its own with `fault.reset(...)`)."""
    _fault_server.reset()
    return _fault_server


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`inferline engine` (llama.cpp + SmolLM2, 4 slots) on a free port; yields its base URL (no /v1).

    Replace with tests/conftest.py's session-scoped `gateway_url` once the gateway lands.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("inferline")
    cmd = [str(exe), "engine", "--port", str(port), "--parallel", "4", "--ctx-per-slot", "1024"]
    log_path = tmp_path_factory.mktemp("engine") / "engine.log"
    log = log_path.open("wb")  # a file, not a pipe: a full pipe would block the engine
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                out = log_path.read_text(errors="replace")
                pytest.fail(f"inferline engine exited with {proc.returncode}:\n{out[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"inferline engine not healthy within {ENGINE_START_TIMEOUT_S}s")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
