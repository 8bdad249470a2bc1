"""The discrete-event simulator: conservation, the pod start-up timeline, the metric pipeline, draining, KEDA."""

from __future__ import annotations

import numpy as np

from inferline.autoscale.configs import PRESETS, from_values
from inferline.autoscale.des import HPA_PHASE_S, OUTCOMES
from inferline.autoscale.lifecycle import PodState
from inferline.config import AdmissionConfig

from .conftest import simulate


def outcomes(run: object) -> dict[str, int]:
    codes = np.bincount(run.outcome, minlength=len(OUTCOMES))  # type: ignore[attr-defined]
    return {name: int(n) for name, n in zip(OUTCOMES, codes, strict=True) if n}


def test_every_request_ends_once_and_an_idle_fleet_answers_at_prefill_speed() -> None:
    run = simulate("constant:rate=5", 120, {"minReplicas": 2, "maxReplicas": 2, "targetQueueDepth": 5})
    assert outcomes(run) == {"ok": len(run.traffic)}
    assert not np.isnan(run.finish_s).any()
    ttft = run.first_token_s - run.traffic.arrival_s
    # a 512-token prompt on h100-llama8b: 10 ms + 512/16000 s = 42 ms, plus at most one running step
    assert ttft.min() >= 0.042 - 1e-9 and np.median(ttft) < 0.06
    e2e = run.finish_s - run.traffic.arrival_s
    assert (e2e > ttft).all()


def test_seed_gpu_util_target_climbs_to_max_on_a_load_one_gpu_serves() -> None:
    """DCGM GPU utilization is ~100% whenever an engine has any sequence running, so 75% is always breached."""
    run = simulate("constant:rate=20", 900, PRESETS["seed"])
    ups = [d for d in run.decisions if d.rescaled]
    # the first decision waits for the pipeline: DCGM refresh at 30 s, scrape at 30 s, HPA pass at 35 s
    assert (ups[0].time_s, ups[0].current, ups[0].desired) == (35.0, 2, 3)
    assert run.timeline["desired"].max() == 10
    assert np.median(run.timeline["gpu_util"][60:]) == 100.0
    ttft = (run.first_token_s - run.traffic.arrival_s)[run.outcome == 1]
    assert np.percentile(ttft, 99) < 0.1  # while one replica would have served it well within the SLO


def test_scale_up_timeline_follows_pod_start_timings() -> None:
    values = {"minReplicas": 1, "maxReplicas": 4, "targetRunningRequests": 64}
    run = simulate("step:base=4,peak=40,at=60", 400, values)
    first = next(e for e in run.episodes if e.decision_s is not None)
    assert first.breach_s >= 60
    assert (first.decision_s - HPA_PHASE_S) % 15 == 0  # decisions happen on HPA passes
    assert first.first_ready_s is not None and first.decision_s is not None
    # schedule 2 s + pull 30 s + load 60 s (a multiple of the 5 s probe period)
    assert first.first_ready_s - first.decision_s == 92.0
    new = [p for p in run.pods if p.created_s == first.decision_s]
    assert new and all(p.ready_s - p.created_s == 92.0 and p.bound_s - p.created_s == 2.0 for p in new)


def test_scale_down_drains_without_losing_requests() -> None:
    values = {"minReplicas": 1, "maxReplicas": 6, "targetRunningRequests": 32, "scaleDownStabilizationSeconds": 30}
    run = simulate("spike:base=2,peak=40,at=30,for=200", 600, values)
    assert any(d.desired < d.current for d in run.decisions)
    assert "shutdown" not in outcomes(run)
    gone = [p for p in run.pods if p.state is PodState.TERMINATED]
    assert gone
    for p in gone:
        assert p.deleted_s <= p.terminated_s <= p.deleted_s + 30.0
        assert p.gpu_seconds(run.end_s) == p.terminated_s - p.bound_s or p.bound_s < 0


def test_gateway_queue_bounds_and_rejections() -> None:
    admission = AdmissionConfig(queue_max_depth=50, queue_timeout_s=5.0)
    values = {"minReplicas": 1, "maxReplicas": 1, "targetQueueDepth": 5}
    run = simulate("constant:rate=60", 120, values, output=512, admission=admission)
    got = outcomes(run)
    assert got.get("queue_full", 0) > 0 and got["ok"] > 0
    assert run.timeline["queue"].max() <= 50
    # an engine never holds more than max_num_seqs (the gateway admits below it)
    assert run.timeline["in_flight"].max() <= 256


def test_keda_scales_from_zero_on_request_rate_and_back_after_cooldown() -> None:
    values = {
        "engine": "keda",
        "minReplicas": 0,
        "maxReplicas": 3,
        "targetRequestRate": 10,
        "keda": {"pollingInterval": 30, "cooldownPeriod": 60},
    }
    run = simulate("spike:base=0,peak=5,at=60,for=120", 500, values, initial_replicas=0)
    reasons = [d.reason for d in run.decisions if d.rescaled]
    assert reasons[0] == "KEDA activation" and "KEDA cooldown to 0" in reasons
    act = next(d for d in run.decisions if d.reason == "KEDA activation")
    # the rate needs two scrapes with arrivals in them: the scrape at 75 s, the poll at 95 s
    assert act.time_s == 95.0
    got = outcomes(run)
    assert got.get("no_backend", 0) > 0  # nobody serves until the first pod is Ready (95 + 92 s)
    assert run.timeline["desired"][-1] == 0


def test_values_express_the_seed_scale_down_threshold_as_a_tolerance() -> None:
    cfg = from_values(PRESETS["seed"], "seed")
    assert cfg.hpa is not None and cfg.hpa.behavior is not None
    down = cfg.hpa.behavior.scale_down
    assert down.stabilization_window_s == 300 and abs((down.tolerance or 0) - 0.6) < 1e-12
    assert cfg.hpa.metrics[0].name == "DCGM_FI_DEV_GPU_UTIL" and cfg.hpa.metrics[0].target == 75000
