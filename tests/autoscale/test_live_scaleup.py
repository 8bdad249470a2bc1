"""The live scale-up, short: real processes scaled by the live HPA controller (benchmarks/autoscale_live.py, small).

`inferline serve` discovers SIMULATED engines (`inferline sim`) through a real DNS server; a real Prometheus
(scripts/prometheus.sh) scrapes them and the gateway; the live controller runs the simulator's
HorizontalController on Prometheus' answers and starts engines with a start-up delay; `inferline bench`
drives a step that breaches the target. Asserted (behaviour, not speed; every wait bounded generously):
  - the controller scales up after the breach, on the metric it read from Prometheus;
  - the new engines join the gateway through DNS and take requests;
  - nothing is lost: every request of the bench completes or gets a 429/503, and every 429/503 a side client
    provokes (a burst into a small queue) carries Retry-After;
  - once the load stops it scales back down to minReplicas, draining (no engine stopped with streams on it).
The run's figures are printed (and written to $INFERLINE_LIVE_FIGURES as JSON when set).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferline.autoscale.livecompare import live_side, reaction
from inferline.autoscale.liverun import LiveRun, LiveSettings, run_live

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.skipif(
        os.environ.get("INFERLINE_SKIP_HEAVY") == "1", reason="INFERLINE_SKIP_HEAVY=1: live autoscaling tier not run"
    ),
    pytest.mark.timeout(900),
]

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = LiveSettings(
    autoscaling={"minReplicas": 1, "maxReplicas": 4, "targetRunningRequests": 4, "scaleDownStabilizationSeconds": 10},
    sync_period_s=5.0,
    startup_delay_s=5.0,
    rate=2.0,
    duration_s=40.0,
    queue_max_depth=6,  # small: the side client's burst must find it full (429 queue_full, with Retry-After)
    idle_before_s=3.0,
    cooldown_s=120.0,  # expected ~20 s (window 10 s + passes every 5 s + draining): generous
)
BURST = 24


async def burst_into_the_queue(gateway: str) -> dict[str, Any]:
    """Once the gateway queues (the breach), send BURST short requests at once; record every status and
    Retry-After."""
    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(600):  # wait for a backlog (at most 60 s)
            text = (await client.get(gateway + "/metrics")).text
            depth = [line for line in text.splitlines() if line.startswith("inferline_queue_depth{")]
            if depth and float(depth[0].rsplit(" ", 1)[1]) > 0:
                break
            await asyncio.sleep(0.1)
        body = {"model": SETTINGS.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

        async def one() -> tuple[int, str | None]:
            r = await client.post(gateway + "/v1/chat/completions", json=body)
            return r.status_code, r.headers.get("retry-after")

        answers = await asyncio.gather(*(one() for _ in range(BURST)))
    return {"answers": [list(a) for a in answers]}


def test_scales_up_on_the_breach_joins_by_dns_loses_nothing_and_scales_back_down(tmp_path: Path) -> None:
    run: LiveRun = run_live(SETTINGS, tmp_path, ROOT / "scripts" / "prometheus.sh", print, burst_into_the_queue)
    (tmp_path / "run.json").write_text(json.dumps(run.to_json()))  # for a look after a failure
    side = live_side(run)
    r = reaction(side)
    summary = run.bench["runs"][0]["summary"]
    scaled = [p for p in run.pods if p["created_s"] >= run.first_pass_s]
    figures = {
        "wall_s": run.wall,
        "breach_s": r.breach_s,
        "to_decision_s": r.rel(r.decision_s),
        "to_first_ready_s": r.rel(r.first_ready_s),
        "to_first_request_s": r.rel(r.first_request_s),
        "replicas": f"{r.replicas_from} -> {r.replicas_to}, peak {r.peak_ready}",
        "back_at_min_after_last_arrival_s": r.back_at_min_s,
        "bench": {k: summary[k] for k in ("requests", "completed", "failed", "cancelled", "errors")},
        "burst": run.during_load,
        "cpu_s": run.cpu_s,
        "loadavg": [x[1] for x in run.loadavg],
    }
    print("\nlive scale-up figures:", json.dumps(figures, indent=2))
    if os.environ.get("INFERLINE_LIVE_FIGURES"):
        Path(os.environ["INFERLINE_LIVE_FIGURES"]).write_text(json.dumps(figures, indent=2))
    gateway_log = (tmp_path / "gateway.log").read_text()

    # scaled up after the breach, on what Prometheus said
    assert r.breach_s is not None, "the load never breached the target"
    assert r.decision_s is not None and r.decision_s >= r.breach_s, run.passes
    assert r.replicas_to is not None and r.replicas_from is not None and r.replicas_to > r.replicas_from
    up = next(p for p in run.passes if p["desired"] > p["current"])
    assert max(up["usage"].values()) > 4000 * 1.1, up  # milli-units: above target x (1 + tolerance)

    # the new engines joined the gateway through DNS and took requests
    assert scaled, "no engine was started"
    ready = [p for p in scaled if p["ready_s"] >= 0]
    assert ready, scaled
    first_wave = [p for p in ready if abs(p["created_s"] - (r.decision_s + run.trace_zero_s)) < 1.0]
    assert first_wave, (r, scaled)
    for p in first_wave:
        assert p["joined_s"] >= p["ready_s"] - 0.5, p
        assert p["first_request_s"] >= 0, p
        assert f"backend {SETTINGS.model}@{p['address']} joined model" in gateway_log
        # joined within a re-resolve interval plus a health check and a load poll, 5x for a busy machine
        bound = SETTINGS.discovery_interval_s + SETTINGS.health_interval_s + SETTINGS.load_interval_s
        assert p["joined_s"] - p["ready_s"] <= 5 * bound, p

    # nothing lost: completed, or turned away with 429/503 (and Retry-After, checked on the burst's answers)
    errors = summary["errors"]
    assert set(errors) <= {"http_429", "http_503"}, errors
    assert summary["cancelled"] == 0, summary
    assert summary["completed"] + sum(errors.values()) == summary["requests"], summary
    assert summary["requests"] >= SETTINGS.rate * SETTINGS.duration_s * 0.5  # the load really ran
    assert run.gateway_requests == summary["requests"]  # each reached the gateway and was answered (logged)
    answers = run.during_load["answers"]
    assert len(answers) == BURST
    turned_away = [a for a in answers if a[0] != 200]
    assert turned_away, "the burst into a 6-deep queue got no 429: it did not test Retry-After"
    for status, retry_after in turned_away:
        assert status in (429, 503), answers
        assert retry_after is not None and float(retry_after) > 0, answers

    # scaled back down once the load stopped, draining first
    assert not run.notes, run.notes
    assert run.passes[-1]["desired"] == SETTINGS.autoscaling["minReplicas"], run.passes[-3:]
    assert r.scale_downs >= 1
    drained = [p for p in scaled if 0 <= p["ready_s"] <= p["deleted_s"]]
    assert drained, scaled
    for p in drained:  # left DNS, the gateway let its streams finish and dropped it, then it was stopped
        assert not p["drain_cut"], p
        assert p["left_dns_s"] <= p["gone_s"] <= p["terminated_s"], p
    live_at_end = [p for p in run.pods if p["deleted_s"] < 0]
    assert len(live_at_end) == SETTINGS.autoscaling["minReplicas"], run.pods
    assert "left discovery: draining" in gateway_log and "retired" in gateway_log
