"""The seed's decision matrix as arithmetic: size and price each deployment option for a workload.

Options (the seed note's matrix):
  dedicated-vllm   autoscaled GPU replicas running vLLM; replicas per hour = max(min_replicas,
                   ceil(rate / (capacity x target_utilization))) with capacity = the SLO capacity of one
                   replica (capacity.py), over a daily sine of the workload's traffic
  vllm-proxy       the same plus a routing layer (inferline's gateway): fallback, limits, budgets
  serverless       an open model on a serverless endpoint, billed per token
  managed-api      a managed model API (the chat or reasoning tier, by the workload's quality), per token
  edge-llamacpp    quantized GGUF with llama.cpp on owned devices, sized for the peak (no autoscaling)
Constraints rule options out: offline or compliance (data stays in your network) excludes the per-token
services; reasoning quality excludes the small edge model (and a chat-tier built-in profile); an option
whose p95 TTFT misses the SLO, whose rate limit is below the peak, or that needs more devices than a
site holds is out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from inferline.advise.capacity import Capacity, measure
from inferline.advise.prices import ApiPrice, Prices
from inferline.advise.workload import Quality, Workload
from inferline.sim.profiles import PROFILES, Profile

__all__ = ["OPTION_NAMES", "Option", "evaluate", "rank_options"]

OPTION_NAMES = {
    "dedicated-vllm": "Dedicated GPU cluster (vLLM)",
    "vllm-proxy": "vLLM + proxy (inferline gateway)",
    "serverless": "Serverless inference (per token)",
    "managed-api": "Managed API + SDK",
    "edge-llamacpp": "Edge: quantized GGUF + llama.cpp",
}
_CHAT_TIER_PROFILES = set(PROFILES)  # the built-in profiles model 8B-and-smaller chat models


@dataclass(slots=True)
class Option:
    key: str
    monthly_cost: float
    cost_per_1m_tokens: float
    ttft_p95_ms: float | None
    limit: str
    units: str
    feasible: bool = True
    against: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return OPTION_NAMES[self.key]

    def to_json(self) -> dict[str, Any]:
        return {
            "option": self.key,
            "name": self.name,
            "feasible": self.feasible,
            "monthly_cost": round(self.monthly_cost, 2),
            "cost_per_1m_tokens": round(self.cost_per_1m_tokens, 4),
            "ttft_p95_ms": None if self.ttft_p95_ms is None else round(self.ttft_p95_ms, 1),
            "limit": self.limit,
            "units": self.units,
            "against": self.against,
            "notes": self.notes,
        }


def monthly_tokens(w: Workload, prices: Prices, scale: float = 1.0) -> float:
    return w.requests_per_day * scale * prices.hours_per_month / 24 * w.tokens_per_request


def _per_1m(cost: float, tokens: float) -> float:
    return cost / tokens * 1e6 if tokens > 0 else math.inf


def replicas_by_hour(w: Workload, serving_rps: float, minimum: int, scale: float = 1.0) -> list[int]:
    return [max(minimum, math.ceil(r / serving_rps - 1e-9)) for r in w.hourly_rates(scale)]


def dedicated(
    w: Workload,
    prices: Prices,
    cap: Capacity,
    profile: Profile,
    *,
    scale: float = 1.0,
    with_proxy: bool = False,
    ttft: bool = True,
) -> Option:
    d = prices.dedicated
    key = "vllm-proxy" if with_proxy else "dedicated-vllm"
    tokens = monthly_tokens(w, prices, scale)
    if cap.rate_rps <= 0:
        opt = Option(key, math.inf, math.inf, cap.unloaded_ttft_ms, cap.limit, f"{d.gpu}: none", feasible=False)
        opt.against.append(f"one replica cannot meet the SLOs ({cap.limit})")
        return opt
    serving = cap.rate_rps * d.target_utilization
    hourly = replicas_by_hour(w, serving, d.min_replicas, scale)
    peak_n = max(d.min_replicas, math.ceil(w.peak * scale / serving - 1e-9))
    gpu_hours = sum(hourly) / 24 * prices.hours_per_month
    cost = gpu_hours * d.gpu_hourly * (1 + d.node_overhead_ratio)
    if with_proxy:
        cost += prices.proxy.hourly * prices.proxy.replicas * prices.hours_per_month
    p95 = None
    if ttft and peak_n > 0:
        per_replica = w.peak * scale / peak_n
        p95 = measure(profile, per_replica, w.prompt, w.output).ttft_p95_ms if per_replica > 0 else cap.unloaded_ttft_ms
        if with_proxy:
            p95 += prices.proxy.added_ttft_ms
    units = f"{min(hourly)}-{peak_n} x {d.gpu} (mean {sum(hourly) / 24:.1f})"
    limit = f"{peak_n} GPUs at the peak; one serves {cap.rate_rps:.3g} req/s within the SLO ({cap.limit})"
    opt = Option(key, cost, _per_1m(cost, tokens), p95, limit, units)
    if with_proxy:
        opt.notes.append("fallback routing, rate limits and token budgets in front of the engines")
    return opt


def per_token(key: str, w: Workload, prices: Prices, price: ApiPrice, scale: float = 1.0) -> Option:
    req = w.requests_per_day * scale * prices.hours_per_month / 24
    cost = req * (w.prompt.mean * price.input_per_1m + w.output.mean * price.output_per_1m) / 1e6
    tokens = monthly_tokens(w, prices, scale)
    limit = (
        f"provider rate limit {price.max_rps:g} req/s; TTFT is the provider's ({price.ttft_p95_ms:g} ms p95 assumed)"
    )
    opt = Option(key, cost, _per_1m(cost, tokens), price.ttft_p95_ms, limit, "per token")
    if w.peak * scale > price.max_rps:
        opt.feasible = False
        opt.against.append(f"peak {w.peak * scale:.3g} req/s is above the rate limit ({price.max_rps:g} req/s)")
    return opt


def edge(
    w: Workload, prices: Prices, cap: Capacity, profile: Profile, *, scale: float = 1.0, ttft: bool = True
) -> Option:
    e = prices.edge
    tokens = monthly_tokens(w, prices, scale)
    if cap.rate_rps <= 0:
        opt = Option("edge-llamacpp", math.inf, math.inf, cap.unloaded_ttft_ms, cap.limit, f"{e.device}: none", False)
        opt.against.append(f"one device cannot meet the SLOs ({cap.limit})")
        return opt
    serving = cap.rate_rps * prices.dedicated.target_utilization
    n = max(1, math.ceil(w.peak * scale / serving - 1e-9))
    cost = n * e.hourly * prices.hours_per_month
    p95 = None
    if ttft:
        p95 = measure(profile, w.peak * scale / n, w.prompt, w.output).ttft_p95_ms
    limit = f"one device serves {cap.rate_rps:.3g} req/s within the SLO ({cap.limit}); at most {e.max_devices} devices"
    opt = Option("edge-llamacpp", cost, _per_1m(cost, tokens), p95, limit, f"{n} x {e.device} ({profile.name})")
    opt.notes.append(f"sized for {profile.description}: check its answers on your task before relying on it")
    if n > e.max_devices:
        opt.feasible = False
        opt.against.append(
            f"needs {n} devices, the site holds {e.max_devices} (capped at {e.max_devices * serving:.3g} req/s)"
        )
    return opt


def evaluate(
    w: Workload,
    prices: Prices,
    gpu_cap: Capacity,
    gpu_profile: Profile,
    edge_cap: Capacity,
    edge_profile: Profile,
    *,
    scale: float = 1.0,
    ttft: bool = True,
) -> list[Option]:
    """Every option for W (its traffic times SCALE), with the constraints applied."""
    tier = prices.managed_api.reasoning if w.quality == Quality.REASONING else prices.managed_api.chat
    opts = [
        dedicated(w, prices, gpu_cap, gpu_profile, scale=scale, ttft=ttft),
        dedicated(w, prices, gpu_cap, gpu_profile, scale=scale, with_proxy=True, ttft=ttft),
        per_token("serverless", w, prices, prices.serverless, scale),
        per_token("managed-api", w, prices, tier, scale),
        edge(w, prices, edge_cap, edge_profile, scale=scale, ttft=ttft),
    ]
    for o in opts:
        if o.key in ("serverless", "managed-api"):
            if w.offline:
                o.against.append("needs internet access (workload is offline)")
            if w.compliance:
                o.against.append("prompts leave your network (compliance)")
        if o.key == "managed-api":
            o.notes.append(f"{'reasoning' if w.quality == Quality.REASONING else 'chat'} tier")
        if w.quality == Quality.REASONING:
            if o.key == "edge-llamacpp":
                o.against.append("a small quantized model: not for reasoning (keep FP16/BF16 for reasoning)")
            if o.key in ("dedicated-vllm", "vllm-proxy", "serverless") and gpu_profile.name in _CHAT_TIER_PROFILES:
                o.against.append(
                    f"sized for {gpu_profile.description.split(',')[0]}, a chat-tier model: size your reasoning "
                    "model with --profile/--profile-from"
                )
        if o.key == "dedicated-vllm" and w.needs_routing:
            o.against.append("no routing layer: several models, fallback and limits need the proxy")
        if w.offline and o.key in ("dedicated-vllm", "vllm-proxy"):
            o.notes.append("offline only on your own GPUs (cloud GPU prices used)")
        if o.ttft_p95_ms is not None and o.ttft_p95_ms > w.ttft_slo_ms:
            o.against.append(f"p95 TTFT {o.ttft_p95_ms:.0f} ms is above the {w.ttft_slo_ms:.0f} ms SLO")
        if o.against:
            o.feasible = False
    return opts


def rank_options(opts: list[Option]) -> list[Option]:
    """Feasible first, cheapest first."""
    return sorted(opts, key=lambda o: (not o.feasible, o.monthly_cost))
