"""Test support, the one helper module: free ports, real processes on them (the gateway, standalone engines,
the simulator, a throwaway redis-server), and polling them.

A module with a unique name (not conftest): subpackages have conftest.py files of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from inferline.net.ports import free_port

BIN = Path(sys.executable).parent
INFERLINE = str(BIN / "inferline")
SKIP_HEAVY = os.environ.get("INFERLINE_SKIP_HEAVY") == "1"


REDIS_SH = Path(__file__).resolve().parents[1] / "scripts" / "redis.sh"
REDIS_NOT_INSTALLABLE = 3  # scripts/redis.sh: redis-server missing and apt could not install it


def start_redis(port: int | None = None) -> tuple[str, int]:
    """A throwaway redis-server (scripts/redis.sh) on PORT or a free one: (url, port). Skips, with the
    reason, only when redis-server cannot be installed."""
    import pytest

    port = port or free_port()
    done = subprocess.run([str(REDIS_SH), "start", str(port)], capture_output=True, text=True, timeout=600)
    if done.returncode == REDIS_NOT_INSTALLABLE:
        pytest.skip(f"redis-server is not installed and apt-get could not install it: {done.stderr.strip()}")
    if done.returncode != 0:
        pytest.fail(f"scripts/redis.sh start {port} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return f"redis://127.0.0.1:{port}/0", port


def stop_redis(port: int) -> None:
    subprocess.run([str(REDIS_SH), "stop", str(port)], capture_output=True, timeout=30)


@dataclass
class Proc:
    """A server process we started: its URL, its log, and how to stop it."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_process(args: list[str], url: str, ready_path: str, log_path: Path, timeout: float = 60) -> Proc:
    log_file = log_path.open("wb")
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[:3]} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + ready_path, timeout=1).status_code == 200:
                return Proc(proc, url, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{args[:3]} not ready after {timeout}s:\n{log_path.read_text()[-3000:]}")


def start_gateway(tmp: Path, config: dict[str, object], name: str = "gateway", ready_path: str = "/ready") -> Proc:
    """Start `inferline serve`; wait for /ready (or /health for a deliberately degraded gateway)."""
    port = free_port()
    cfg_path = tmp / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    return start_process(
        [INFERLINE, "serve", "--config", str(cfg_path), "--port", str(port)],
        f"http://127.0.0.1:{port}",
        ready_path,
        tmp / f"{name}.log",
    )


def start_engine(tmp: Path, name: str, parallel: int = 4, ctx_per_slot: int = 1024) -> Proc:
    port = free_port()
    return start_process(
        [
            INFERLINE,
            "engine",
            "--port",
            str(port),
            "--parallel",
            str(parallel),
            "--ctx-per-slot",
            str(ctx_per_slot),
        ],
        f"http://127.0.0.1:{port}",
        "/health",
        tmp / f"{name}.log",
    )


def start_sim(tmp: Path, *args: str, name: str = "sim") -> Proc:
    """`inferline sim` (a SIMULATED engine) with extra CLI args, e.g. ("--profile", "instant")."""
    port = free_port()
    return start_process(
        [INFERLINE, "sim", "--port", str(port), *args], f"http://127.0.0.1:{port}", "/health", tmp / f"{name}.log"
    )


def sim_config(sim_url: str, **sections: object) -> dict[str, object]:
    """A gateway config with one model served by one simulated engine (kind vllm), plus extra sections."""
    return {
        "models": [{"name": "smollm2", "backends": [{"name": "sim-0", "kind": "vllm", "url": sim_url}]}],
        **sections,
    }


# The default gateway of the suite: SmolLM2 on the embedded engine, fast load polling so tests
# can watch the engine's running count, and a small context so overflows are cheap to provoke.
EMBEDDED_CONFIG: dict[str, object] = {
    "server": {"shutdown_grace_s": 5, "client_stall_timeout_s": 5},
    "routing": {"load_interval_s": 0.1, "health_interval_s": 0.5},
    "models": [
        {
            "name": "smollm2",
            "backends": [{"name": "embedded-0", "kind": "embedded", "embedded": {"parallel": 8, "ctx_per_slot": 1024}}],
        }
    ],
}


def backend_running(gateway_url: str, backend: str) -> int | None:
    """The engine's running-request count as the gateway last read it (None: unknown)."""
    for b in httpx.get(gateway_url + "/backends", timeout=5).json()["backends"]:
        if b["name"] == backend:
            value: int | None = b["running"]
            return value
    raise KeyError(backend)


def wait_until(predicate: object, timeout: float, interval: float = 0.05) -> float:
    """Poll until predicate() is truthy; returns seconds waited, raises AssertionError on timeout."""
    assert callable(predicate)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
