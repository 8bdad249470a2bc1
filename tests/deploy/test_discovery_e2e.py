"""Engines found as they scale, end to end: `inferline serve` discovering SIMULATED engines (`inferline sim`)
through a real DNS server, while `inferline bench` sends load.

The DNS server plays a headless Service: the test adds an engine's loopback address when it is ready
(scale-up) and removes it before stopping the engine (scale-down: the pod leaves the Endpoints, its preStop
pause keeps it serving, then SIGTERM). Asserted: no request lost; each new engine gets a request within one
re-resolve interval plus its first health check and load poll. The figures are printed and written to
$INFERLINE_DISCOVERY_FIGURES (JSON) when set.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import INFERLINE, Proc, free_port, start_gateway, start_process, wait_until

from .dnsserver import TestDnsServer

NAME = "smollm2-engine.inference.svc.cluster.local"
INTERVAL_S = 1.0  # re-resolve period
HEALTH_S = 0.5
LOAD_S = 0.2
BENCH_S = 40.0

pytestmark = pytest.mark.timeout(600)


def _start_sim(tmp: Path, host: str, port: int) -> Proc:
    return start_process(
        [INFERLINE, "sim", "--host", host, "--port", str(port), "--profile", "cpu-smollm2", "--time-scale", "0.5"],
        f"http://{host}:{port}",
        "/health",
        tmp / f"sim-{host}.log",
    )


_SERVED = re.compile(
    r"^vllm:(num_requests_running|num_requests_waiting|request_success_total)\{.*\} ([0-9.e+]+)$", re.M
)


def _engine_saw_a_request(url: str) -> bool:
    text = httpx.get(url + "/metrics", timeout=5).text
    return any(float(v) > 0 for _, v in _SERVED.findall(text))


def _backends(gateway: Proc) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in httpx.get(gateway.url + "/backends", timeout=5).json()["backends"]}


def test_engines_join_and_leave_under_load_and_nothing_is_lost(tmp_path: Path) -> None:
    figures: dict[str, Any] = {"interval_s": INTERVAL_S, "health_interval_s": HEALTH_S, "load_interval_s": LOAD_S}
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    sims: dict[str, Proc] = {}
    with TestDnsServer(ttl=1) as dns:
        port = free_port()
        try:
            sims[hosts[0]] = _start_sim(tmp_path, hosts[0], port)
            dns.set(NAME, [hosts[0]])
            config = {
                "server": {"shutdown_grace_s": 5},
                "routing": {"health_interval_s": HEALTH_S, "load_interval_s": LOAD_S},
                "limits": {"require_api_key": False},
                "models": [
                    {
                        "name": "smollm2",
                        "discovery": {
                            "dns_name": NAME,
                            "port": port,
                            "kind": "vllm",
                            "interval_s": INTERVAL_S,
                            "nameservers": [dns.nameserver],
                            "max_num_seqs": 32,
                        },
                    }
                ],
            }
            gateway = start_gateway(tmp_path, config)
            try:
                assert list(_backends(gateway)) == [f"smollm2@{hosts[0]}:{port}"]
                out = tmp_path / "bench.json"
                bench_args = [INFERLINE, "bench", "--url", gateway.url, "--model", "smollm2", "--rate", "6"]
                bench_args += ["--duration", str(BENCH_S), "--grace", "60", "--input-len", "64", "--output-len", "48"]
                bench_args += ["--seed", "1", "--out", str(out), "--no-progress"]
                bench = subprocess.Popen(
                    bench_args,
                    stdout=(tmp_path / "bench.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
                time.sleep(5)
                # scale up twice: the engine is ready, then its address appears in the Service
                joins = []
                for host in hosts[1:]:
                    sims[host] = _start_sim(tmp_path, host, port)
                    appeared = time.monotonic()
                    dns.set(NAME, [h for h in hosts if h in sims])
                    name = f"smollm2@{host}:{port}"
                    wait_until(lambda name=name: name in _backends(gateway), timeout=60, interval=0.02)
                    joined = time.monotonic() - appeared
                    wait_until(lambda host=host: _engine_saw_a_request(sims[host].url), timeout=60, interval=0.02)
                    first = time.monotonic() - appeared
                    # both measured from the moment the address appeared in DNS
                    joins.append({"engine": host, "joined_s": round(joined, 3), "first_request_s": round(first, 3)})
                    assert time.monotonic() - appeared < 60
                    time.sleep(4)
                figures["scale_up"] = joins
                # scale down: the first engine leaves the Service, drains, then is stopped
                gone = f"smollm2@{hosts[0]}:{port}"
                # leave while it has streams in flight (the point of draining), if the load gives us one soon
                with contextlib.suppress(AssertionError):
                    wait_until(lambda: _backends(gateway)[gone]["in_flight"] > 0, timeout=20, interval=0.01)
                in_flight_when_left = _backends(gateway)[gone]["in_flight"]
                left = time.monotonic()
                dns.set(NAME, hosts[1:])
                drained_after = wait_until(lambda: gone not in _backends(gateway), timeout=120, interval=0.05)
                sims.pop(hosts[0]).stop()
                # its gauges are gone (pod IPs churn); counters keep their history
                gauge_names = ("inferline_backend_healthy", "inferline_backend_kv", "inferline_backend_requests")
                text = httpx.get(gateway.url + "/metrics", timeout=5).text
                gauges = [line for line in text.splitlines() if line.startswith(gauge_names)]
                assert not [g for g in gauges if f'"{gone}"' in g], gauges
                figures["scale_down"] = {
                    "engine": hosts[0],
                    "in_flight_when_it_left": in_flight_when_left,
                    "drained_and_removed_s": round(drained_after, 3),
                }
                assert time.monotonic() - left < 120
                assert bench.wait(timeout=BENCH_S + 180) == 0, (tmp_path / "bench.log").read_text()[-3000:]
                result = json.loads(out.read_text())
                summary = result["runs"][0]["summary"]
                figures["requests"] = {
                    "sent": summary["requests"],
                    "completed": summary["completed"],
                    "failed": summary["failed"],
                    "cancelled": summary["cancelled"],
                    "errors": summary["errors"],
                }
                figures["requests_lost"] = summary["requests"] - summary["completed"]
                served = {h: _engine_saw_a_request(p.url) for h, p in sims.items()}
                figures["engines_serving_at_end"] = served
            finally:
                gateway.stop()
                log = gateway.log()
        finally:
            for p in sims.values():
                p.stop()
    print("\ndiscovery figures:", json.dumps(figures, indent=2))
    if os.environ.get("INFERLINE_DISCOVERY_FIGURES"):
        Path(os.environ["INFERLINE_DISCOVERY_FIGURES"]).write_text(json.dumps(figures, indent=2))
    assert figures["requests_lost"] == 0, (figures, log[-3000:])
    assert summary["requests"] >= BENCH_S * 6 * 0.5  # the load really ran
    assert all(served.values()), served
    bound = INTERVAL_S + HEALTH_S + LOAD_S
    for j in figures["scale_up"]:
        # within one re-resolve interval (+ the first health check and load poll), 5x slack for a busy machine
        assert j["first_request_s"] <= 5 * bound, j
    assert "left discovery: draining" in log and "retired" in log
