"""Sizing and the constraints of the decision matrix (capacities given, no simulation)."""

from __future__ import annotations

import math

from inferline.advise.capacity import Capacity
from inferline.advise.options import evaluate, rank_options, replicas_by_hour
from inferline.advise.prices import load_prices
from inferline.advise.workload import Workload
from inferline.sim.profiles import CPU_SMOLLM2, H100_LLAMA8B

GPU = Capacity("h100-llama8b", 16.0, "TTFT SLO", 42.0, 10.0, None, 16.0 * 768)
EDGE = Capacity("cpu-smollm2", 0.5, "TTFT SLO", 500.0, 9.0, None, 0.5 * 250)


def options(w: Workload) -> dict[str, object]:
    opts = evaluate(w, load_prices(), GPU, H100_LLAMA8B, EDGE, CPU_SMOLLM2, ttft=False)
    return {o.key: o for o in opts}


def test_dedicated_cost_follows_the_hourly_replicas() -> None:
    p = load_prices()
    w = Workload(requests_per_day=50 * 86400, peak_rps=100)
    o = options(w)["dedicated-vllm"]
    hourly = replicas_by_hour(w, 16.0 * 0.75, 2)
    assert max(hourly) == math.ceil(100 / 12) and min(hourly) >= 2
    expected = sum(hourly) / 24 * p.hours_per_month * p.dedicated.gpu_hourly * (1 + p.dedicated.node_overhead_ratio)
    assert o.monthly_cost == expected  # type: ignore[attr-defined]
    proxy = options(w)["vllm-proxy"]
    assert proxy.monthly_cost == expected + p.proxy.hourly * p.proxy.replicas * p.hours_per_month  # type: ignore[attr-defined]


def test_per_token_cost() -> None:
    p = load_prices()
    w = Workload(requests_per_day=10_000, prompt_tokens="500", output_tokens="100")
    o = options(w)["serverless"]
    per_request = (500 * p.serverless.input_per_1m + 100 * p.serverless.output_per_1m) / 1e6
    assert abs(o.monthly_cost - 10_000 * p.hours_per_month / 24 * per_request) < 1e-9  # type: ignore[attr-defined]


def test_offline_and_compliance_rule_out_the_per_token_services() -> None:
    o = options(Workload(requests_per_day=1000, offline=True, compliance=True))
    for key in ("serverless", "managed-api"):
        assert not o[key].feasible and "internet" in o[key].against[0]  # type: ignore[attr-defined]
    assert o["edge-llamacpp"].feasible  # type: ignore[attr-defined]


def test_reasoning_rules_out_small_models_and_uses_the_reasoning_tier() -> None:
    o = options(Workload(requests_per_day=1000, quality="reasoning", ttft_slo_ms=2000))
    assert not o["edge-llamacpp"].feasible and not o["dedicated-vllm"].feasible  # type: ignore[attr-defined]
    api = o["managed-api"]
    assert api.feasible and api.notes == ["reasoning tier"]  # type: ignore[attr-defined]


def test_routing_needs_the_proxy_and_rate_limits_and_device_caps_apply() -> None:
    o = options(Workload(requests_per_day=1000, needs_routing=True))
    assert not o["dedicated-vllm"].feasible and o["vllm-proxy"].feasible  # type: ignore[attr-defined]
    big = options(Workload(requests_per_day=200 * 86400, peak_rps=400))
    assert not big["serverless"].feasible and "rate limit" in big["serverless"].against[0]  # type: ignore[attr-defined]
    assert not big["edge-llamacpp"].feasible and "devices" in big["edge-llamacpp"].against[0]  # type: ignore[attr-defined]


def test_ranking_puts_feasible_and_cheap_first() -> None:
    ranked = rank_options(list(options(Workload(requests_per_day=1000, offline=True)).values()))  # type: ignore[arg-type]
    assert ranked[0].key == "edge-llamacpp" and all(not o.feasible for o in ranked[-2:])
