"""A real Prometheus, with the generated scrape config and the shipped rules, watching a gateway and a simulated
fleet: load from `inferline bench` drives one model into slow TTFT and another into high KV-cache use; each
alert goes firing, and resolves once the load stops.

Only the test's own configuration is shortened: scrape and evaluation every second, and the rules rendered
with `scale=1/60` (a 10-minute `for` lasts 10 s, a 5-minute rate window 5 s) by the same generator that
writes the shipped files at scale 1.

Setup (all on loopback, free ports):
  model `slow`    two simulated H100 engines (h100-llama8b), 2 slots each: 16 users queue at the gateway
  model `kvfull`  one simulated engine with a 64-block (1024-token) KV cache. The gateway's own admission
                  keeps an engine below 85% KV (that is its job), so the pressure comes from traffic it does
                  not control: `inferline bench` sends straight to the engine (as other clients, or another
                  gateway replica with its own view, would). The gateway still reads the engine's KV gauge
                  and reports it, and the alert fires on the gateway's series.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from inferline.observe.rules import render_rules
from inferline.observe.scrape import render_scrape_config
from support import INFERLINE, Proc, free_port, start_gateway, start_sim

from .test_alert_rules import promtool

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.skipif(
        os.environ.get("INFERLINE_SKIP_HEAVY") == "1", reason="INFERLINE_SKIP_HEAVY=1: real Prometheus tier not run"
    ),
    pytest.mark.timeout(600),
]

ROOT = Path(__file__).resolve().parents[2]
SCALE = 1 / 60
FIRE_TIMEOUT_S = 120.0
RESOLVE_TIMEOUT_S = 90.0


@dataclass
class Stack:
    gateway: Proc
    prometheus: str
    slow: Proc
    kvfull: Proc
    tmp: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    promtool()  # installs Debian's prometheus when missing (scripts/prometheus.sh)
    tmp = tmp_path_factory.mktemp("prom-e2e")
    procs: list[Proc] = []
    prom_port = free_port()
    try:
        slow = start_sim(
            tmp, "--profile", "h100-llama8b", "--count", "2", "--model", "slow", "--max-num-seqs", "2", name="sim-slow"
        )
        procs.append(slow)
        kvfull = start_sim(
            tmp,
            "--profile",
            "h100-llama8b",
            "--model",
            "kvfull",
            "--kv-blocks",
            "64",
            "--max-num-seqs",
            "32",
            name="sim-kvfull",
        )
        procs.append(kvfull)
        slow_port = int(slow.url.rsplit(":", 1)[1])
        slow_urls = [slow.url, f"http://127.0.0.1:{slow_port + 1}"]
        cfg = {
            "routing": {"load_interval_s": 0.05, "health_interval_s": 0.5},
            "models": [
                {
                    "name": "slow",
                    "backends": [
                        {"name": f"slow-{i}", "kind": "vllm", "url": u, "max_num_seqs": 2}
                        for i, u in enumerate(slow_urls)
                    ],
                },
                {
                    "name": "kvfull",
                    "backends": [{"name": "kvfull-0", "kind": "vllm", "url": kvfull.url, "max_num_seqs": 32}],
                },
            ],
        }
        gateway = start_gateway(tmp, cfg)
        procs.append(gateway)
        rules = tmp / "rules.yaml"
        rules.write_text(render_rules(scale=SCALE, interval_s=1))
        config = tmp / "prometheus.yml"
        config.write_text(
            render_scrape_config(
                gateways=[gateway.url],
                engines=[*slow_urls, kvfull.url],
                dcgm=[u + "/dcgm/metrics" for u in [*slow_urls, kvfull.url]],
                scrape_interval_s=1,
                rule_files=[str(rules)],
            )
        )
        start = subprocess.run(
            ["bash", str(ROOT / "scripts/prometheus.sh"), "start", str(prom_port), str(config), str(tmp / "prom")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert start.returncode == 0, start.stdout + start.stderr
        yield Stack(gateway, f"http://127.0.0.1:{prom_port}", slow, kvfull, tmp)
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/prometheus.sh"), "stop", str(prom_port)], capture_output=True)
        for p in reversed(procs):
            p.stop()


def alerts(prom: str, name: str) -> list[dict[str, object]]:
    """Active alerts called NAME (pending or firing), from Prometheus' HTTP API."""
    data = httpx.get(prom + "/api/v1/alerts", timeout=5).json()
    assert data["status"] == "success"
    return [a for a in data["data"]["alerts"] if a["labels"]["alertname"] == name]


def firing(prom: str, name: str, **labels: str) -> list[dict[str, object]]:
    return [
        a
        for a in alerts(prom, name)
        if a["state"] == "firing" and all(a["labels"].get(k) == v for k, v in labels.items())  # type: ignore[attr-defined]
    ]


def query(prom: str, expr: str) -> list[dict[str, object]]:
    data = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert data["status"] == "success", data
    result: list[dict[str, object]] = data["data"]["result"]
    return result


def bench(stack: Stack, model: str, *args: str, url: str | None = None) -> subprocess.Popen[bytes]:
    """`inferline bench` against the gateway (or URL) in the background, until stopped."""
    log = (stack.tmp / f"bench-{model}.log").open("wb")
    cmd = [
        INFERLINE,
        "bench",
        "--url",
        url or stack.gateway.url,
        "--model",
        model,
        "--no-progress",
        "--duration",
        "300",
        "--grace",
        "5",
        "--ignore-eos",
        *args,
    ]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def wait_for(predicate: object, timeout_s: float, what: str, since: float | None = None) -> float:
    """Poll PREDICATE every 0.5 s; returns seconds since SINCE (default: now) when it held."""
    assert callable(predicate)
    start = time.monotonic() if since is None else since
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def test_targets_are_up_and_series_carry_the_contract_and_engine_names(stack: Stack) -> None:
    prom = stack.prometheus
    wait_for(lambda: len(query(prom, "up == 1")) == 7, 30, "7 targets up (gateway, 3 engines, 3 GPUs)")
    jobs = {r["metric"]["job"] for r in query(prom, "up")}  # type: ignore[index]
    assert jobs == {"inferline", "engines", "dcgm"}
    wait_for(lambda: len(query(prom, "inferline_model_ready_backends == 2")) == 1, 30, "slow has 2 ready backends")
    # The engine job's series keep vLLM's colon names (the generated config renames vllm_x back to vllm:x).
    assert len(query(prom, '{__name__="vllm:kv_cache_usage_perc"}')) == 3
    gpus = query(prom, "DCGM_FI_DEV_GPU_UTIL")
    assert len(gpus) == 3 and {"gpu", "UUID", "device", "modelName", "Hostname"} <= set(gpus[0]["metric"])  # type: ignore[arg-type]


def test_slow_ttft_fires_then_resolves_after_the_load_stops(stack: Stack) -> None:
    prom = stack.prometheus
    assert not firing(prom, "InferlineTTFTHigh")
    started = time.monotonic()
    # 16 users on 4 engine slots, 100-token answers (~1 s each): requests wait ~3 s for a slot.
    load = bench(stack, "slow", "--concurrency", "16", "--input-len", "64", "--output-len", "100")
    try:
        fired_s = wait_for(lambda: firing(prom, "InferlineTTFTHigh", model="slow"), FIRE_TIMEOUT_S, "TTFT alert")
        alert = firing(prom, "InferlineTTFTHigh", model="slow")[0]
        assert alert["labels"]["backend"] in {"slow-0", "slow-1"}  # type: ignore[index]
        assert alert["labels"]["severity"] == "warning"  # type: ignore[index]
        assert "slow" in alert["annotations"]["summary"]  # type: ignore[index]
        assert not firing(prom, "InferlineKVCacheUsageHigh")  # an H100's KV cache is far from full
    finally:
        stopped = time.monotonic()
        stop(load)
    resolved_s = wait_for(
        lambda: not alerts(prom, "InferlineTTFTHigh"), RESOLVE_TIMEOUT_S, "TTFT alert resolves", since=stopped
    )
    print(
        f"\nTTFT phase: fired {fired_s:.1f} s after load start, resolved {resolved_s:.1f} s after it stopped "
        f"(phase {time.monotonic() - started:.1f} s)"
    )


def test_high_kv_use_fires_then_resolves_after_the_load_stops(stack: Stack) -> None:
    prom = stack.prometheus
    assert not firing(prom, "InferlineKVCacheUsageHigh")
    started = time.monotonic()
    # 32 users straight at the engine, 120-token prompts and 200-token answers: 64 blocks hold ~3 of them, so
    # the engine runs with its cache full, preempting.
    load = bench(
        stack, "kvfull", "--concurrency", "32", "--input-len", "120", "--output-len", "200", url=stack.kvfull.url
    )
    try:
        fired_s = wait_for(
            lambda: firing(prom, "InferlineKVCacheUsageHigh", model="kvfull", backend="kvfull-0"),
            FIRE_TIMEOUT_S,
            "KV alert",
        )
        assert not firing(prom, "InferlineKVCacheUsageHigh", model="slow")
    finally:
        stopped = time.monotonic()
        stop(load)
    resolved_s = wait_for(
        lambda: not alerts(prom, "InferlineKVCacheUsageHigh"), RESOLVE_TIMEOUT_S, "KV alert resolves", since=stopped
    )
    print(
        f"\nKV phase: fired {fired_s:.1f} s after load start, resolved {resolved_s:.1f} s after it stopped "
        f"(phase {time.monotonic() - started:.1f} s)"
    )
