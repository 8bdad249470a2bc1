"""`inferline serve --workers N`: one port, N processes, shared limits refused in memory, engine quotas,
one /metrics for all, a drain on SIGTERM, and a clear line where the config cannot run in several."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from inferline.backends.base import EngineLoad
from inferline.backends.pool import BackendState
from inferline.config import BackendConfig, BackendKind, InferlineConfig, RoutingConfig
from inferline.gateway.saturation import has_room
from inferline.gateway.workers import check_workers, merge_expositions
from support import INFERLINE, free_port, sim_config, start_gateway, start_sim, wait_until


def test_engine_slots_are_split_between_workers_and_add_up() -> None:
    from inferline.backends.openai_http import OpenAIHTTPBackend

    backend = OpenAIHTTPBackend(
        BackendConfig(name="e", kind=BackendKind.VLLM, url="http://127.0.0.1:1", max_num_seqs=5),
        "m",
        RoutingConfig(),
    )
    now = time.monotonic()
    admitted = []
    for index in range(2):
        state = BackendState(backend=backend, model="m", healthy=True, worker=(index, 2))
        state.load = EngineLoad(running=0, waiting=0, kv_cache_usage_ratio=0.0, observed_at=now)
        n = 0
        while has_room(state, now, 2.0):
            state.in_flight += 1
            n += 1
        admitted.append(n)
    assert admitted == [3, 2]  # 5 slots: 3 + 2, never 5 + 5


def test_configs_that_cannot_run_in_several_workers_are_named() -> None:
    embedded = InferlineConfig.model_validate({"server": {"workers": 2}})
    assert "embedded engine" in (check_workers(embedded) or "")
    limited = InferlineConfig.model_validate(
        {
            **sim_config("http://127.0.0.1:1"),
            "server": {"workers": 2},
            "limits": {"anonymous_limits": {"requests_per_minute": 10}},
        }
    )
    assert "limits.store: redis" in (check_workers(limited) or "")
    assert check_workers(InferlineConfig.model_validate({**sim_config("http://127.0.0.1:1")})) is None


def test_metrics_of_workers_merge() -> None:
    a = '# HELP x_total c\n# TYPE x_total counter\nx_total{m="a"} 2.0\n# HELP g d\n# TYPE g gauge\ng 1.0\n'
    b = '# HELP x_total c\n# TYPE x_total counter\nx_total{m="a"} 3.0\n# HELP g d\n# TYPE g gauge\ng 4.0\n'
    text = merge_expositions({"1": a, "2": b}).decode()
    assert 'x_total{m="a"} 5.0' in text
    assert 'g{worker="1"} 1.0' in text and 'g{worker="2"} 4.0' in text


def test_embedded_with_workers_is_one_clear_line(tmp_path: Path) -> None:
    port = free_port()
    out = subprocess.run(
        [INFERLINE, "serve", "--port", str(port), "--workers", "2"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "embedded engine" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_two_workers_share_the_port_and_drain(tmp_path: Path) -> None:
    sim = start_sim(tmp_path, "--profile", "instant", "--max-num-seqs", "64")
    cfg = sim_config(sim.url, server={"workers": 2, "shutdown_grace_s": 5})
    gw = start_gateway(tmp_path, cfg)
    try:
        body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        ids = set()
        for _ in range(40):
            with httpx.Client(timeout=30) as c:  # a new connection each time: the kernel spreads them
                r = c.post(gw.base_url + "/chat/completions", json=body)
                assert r.status_code == 200
                ids.add(r.headers["x-request-id"].split("-")[1])  # req-<pid>-...: which worker answered
        assert len(ids) == 2, "both workers answered"
        wait_until(lambda: _requests_ok(gw.url) == 40, timeout=10)  # every worker's count, on any worker
        with httpx.Client(timeout=60) as c, c.stream("POST", gw.base_url + "/chat/completions", json={
            **body, "max_tokens": 400, "stream": True}) as r:  # fmt: skip
            lines = r.iter_lines()
            next(lines)
            gw.proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line.startswith("data:")]
        assert rest[-1] == "data: [DONE]", "a stream in flight at SIGTERM completes"
        assert gw.proc.wait(30) == 0
        assert len(re.findall(r"SIGTERM: draining \(worker", gw.log())) == 2
    finally:
        gw.stop()
        sim.stop()


def _requests_ok(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    m = re.search(r'^inferline_requests_total\{[^}]*outcome="ok"[^}]*\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("workers", [1, 2])
def test_port_in_use_is_one_clear_line(tmp_path: Path, workers: int) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(sim_config("http://127.0.0.1:1", server={"workers": workers})))
        out = subprocess.run(
            [INFERLINE, "serve", "--config", str(cfg), "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"inferline: cannot listen on 127.0.0.1:{port}: port {port} is already in use on 127.0.0.1 (another "
        "`inferline serve`, or another program); stop it or choose a free port with --port N (or server.port in "
        "the config)"
    )
