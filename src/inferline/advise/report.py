"""The advice: a ranked table, the recommendation with its reasons, cost against traffic, and the seed's claims."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from inferline.advise.capacity import Capacity
from inferline.advise.options import OPTION_NAMES, Option, evaluate
from inferline.advise.prices import Prices
from inferline.advise.workload import SECONDS_PER_DAY, Workload
from inferline.sim.profiles import Profile

__all__ = ["Inputs", "claims", "cost_curve", "print_advice", "recommendation"]


@dataclass(frozen=True, slots=True)
class Inputs:
    workload: Workload
    prices: Prices
    gpu_cap: Capacity
    gpu_profile: Profile
    edge_cap: Capacity
    edge_profile: Profile

    def options(self, scale: float = 1.0, ttft: bool = True) -> list[Option]:
        return evaluate(
            self.workload, self.prices, self.gpu_cap, self.gpu_profile, self.edge_cap, self.edge_profile,
            scale=scale, ttft=ttft,
        )  # fmt: skip


def _money(x: float, cur: str) -> str:
    if not math.isfinite(x):
        return "–"
    return f"{x:,.0f} {cur}" if x >= 100 else f"{x:,.2f} {cur}"


def recommendation(ranked: list[Option], w: Workload, prices: Prices) -> tuple[Option | None, list[str]]:
    feasible = [o for o in ranked if o.feasible]
    cur = prices.currency
    if not feasible:
        return None, ["no option meets every constraint; the closest: " + "; ".join(
            f"{o.name} ({o.against[0]})" for o in ranked[:2]
        )]  # fmt: skip
    best = feasible[0]
    reasons = [f"the cheapest option that meets every constraint: {_money(best.monthly_cost, cur)}/month "
               f"({best.cost_per_1m_tokens:.3g} {cur} per 1M tokens)"]  # fmt: skip
    if len(feasible) > 1:
        nxt = feasible[1]
        saving = 1 - best.monthly_cost / nxt.monthly_cost if nxt.monthly_cost > 0 else 0.0
        reasons.append(f"{saving:.0%} below the next feasible option, {nxt.name} ({_money(nxt.monthly_cost, cur)})")
    if best.ttft_p95_ms is not None:
        reasons.append(f"expected p95 TTFT {best.ttft_p95_ms:.0f} ms against the {w.ttft_slo_ms:.0f} ms SLO")
    if w.offline or w.compliance:
        reasons.append("runs without sending prompts outside your network" + (" and offline" if w.offline else ""))
    reasons.append(f"what limits it: {best.limit}")
    for o in ranked:
        if not o.feasible and o.against:
            reasons.append(f"not {o.name}: {o.against[0]}")
    return best, reasons


def print_advice(console: Console, inp: Inputs, ranked: list[Option], prices_label: str = "") -> None:
    w, p = inp.workload, inp.prices
    cur = p.currency
    console.print(
        f"[bold]{w.name}[/]: {w.requests_per_day:,.0f} requests/day (mean {w.mean_rps:.3g}, peak {w.peak:.3g} req/s), "
        f"prompt {w.prompt_tokens} / output {w.output_tokens} tokens, p95 TTFT SLO {w.ttft_slo_ms:.0f} ms"
        + (f", TPOT SLO {w.tpot_slo_ms:.0f} ms" if w.tpot_slo_ms else "")
        + f", quality {w.quality.value}"
        + (", offline" if w.offline else "")
        + (", compliance" if w.compliance else "")
        + (", needs routing" if w.needs_routing else "")
    )
    console.print(
        f"[dim]prices: {prices_label or 'given'} (as of {p.as_of}); "
        f"one {p.dedicated.gpu} replica ({inp.gpu_profile.name}) serves "
        f"{inp.gpu_cap.rate_rps:.3g} req/s within the SLO; one edge device ({inp.edge_profile.name}) "
        f"{inp.edge_cap.rate_rps:.3g} req/s (SIMULATED capacity)[/]"
    )
    t = Table(title="options, best first", title_justify="left")
    for col in (
        "#",
        "option",
        "ok",
        f"{cur}/month",
        f"{cur}/1M tok",
        "p95 TTFT ms",
        "sized as",
        "what limits it / why not",
    ):
        t.add_column(col, justify="right" if col in (f"{cur}/month", f"{cur}/1M tok", "p95 TTFT ms", "#") else "left")
    for i, o in enumerate(ranked, 1):
        why = "; ".join(o.against) if o.against else o.limit
        t.add_row(
            str(i),
            o.name,
            "yes" if o.feasible else "no",
            _money(o.monthly_cost, "").strip(),
            "–" if not math.isfinite(o.cost_per_1m_tokens) else f"{o.cost_per_1m_tokens:.3g}",
            "–" if o.ttft_p95_ms is None else f"{o.ttft_p95_ms:,.0f}",
            o.units,
            why,
        )
    console.print(t)
    best, reasons = recommendation(ranked, w, p)
    head = f"[bold green]recommendation: {best.name}[/]" if best else "[bold red]no feasible option[/]"
    console.print(head)
    for r in reasons:
        console.print(f"  - {r}")
    if best is not None:
        for n in best.notes:
            console.print(f"  - note: {n}")


def cost_curve(inp: Inputs, requests_per_day: np.ndarray) -> dict[str, list[float]]:
    """Monthly cost of each option (inf when infeasible by capacity) at each traffic level (peak scaled alike)."""
    out: dict[str, list[float]] = {k: [] for k in OPTION_NAMES}
    for rpd in requests_per_day:
        scale = float(rpd) / inp.workload.requests_per_day
        for o in inp.options(scale, ttft=False):
            capped = any("devices" in a or "rate limit" in a for a in o.against)
            out[o.key].append(math.inf if capped else o.monthly_cost)
    return out


def _scale_for_mean(w: Workload, mean_rps: float) -> float:
    return mean_rps * SECONDS_PER_DAY / w.requests_per_day


def claims(inp: Inputs) -> list[dict[str, Any]]:
    """The seed note's cost claims, against this model with these prices and this workload's token mix."""
    w = inp.workload
    rows: list[dict[str, Any]] = []

    def at(mean_rps: float) -> dict[str, Option]:
        return {o.key: o for o in inp.options(_scale_for_mean(w, mean_rps), ttft=False)}

    for mean in (50.0, 100.0, 200.0):
        o = at(mean)
        ded, srv = o["dedicated-vllm"], o["serverless"]
        ratio = srv.cost_per_1m_tokens / ded.cost_per_1m_tokens
        rows.append({
            "claim": "serverless: 3-4x higher per-token cost above 50 req/s",
            "at": f"{mean:g} req/s mean",
            "model": f"{ratio:.2f}x ({srv.cost_per_1m_tokens:.3g} vs {ded.cost_per_1m_tokens:.3g} per 1M tokens)",
            "holds": 3.0 <= ratio <= 4.0,
        })  # fmt: skip
        saving = 1 - ded.monthly_cost / srv.monthly_cost
        rows.append({
            "claim": "dedicated vLLM: 60-70% lower cost than serverless at scale",
            "at": f"{mean:g} req/s mean",
            "model": f"{saving:.0%} lower",
            "holds": 0.6 <= saving <= 0.7,
        })  # fmt: skip
    for mean in (1.0, 10.0, 100.0):
        o = at(mean)
        extra = o["vllm-proxy"].monthly_cost / o["dedicated-vllm"].monthly_cost - 1
        rows.append({
            "claim": "vLLM + proxy adds 5-8% infra cost",
            "at": f"{mean:g} req/s mean",
            "model": f"+{extra:.1%}",
            "holds": 0.05 <= extra <= 0.08,
        })  # fmt: skip
    o = at(10_000 / SECONDS_PER_DAY)
    api, ded = o["managed-api"], o["dedicated-vllm"]
    rows.append({
        "claim": "managed API: acceptable for <10k req/day",
        "at": "10,000 req/day",
        "model": f"{api.monthly_cost:,.0f} vs dedicated {ded.monthly_cost:,.0f} per month",
        "holds": api.monthly_cost <= ded.monthly_cost,
    })  # fmt: skip
    cross = _crossover(inp, "managed-api", "dedicated-vllm")
    rows.append({
        "claim": "managed API: scales poorly beyond 10k req/day",
        "at": "break-even with dedicated",
        "model": "never below 10M req/day" if cross is None else f"{cross:,.0f} req/day ({cross / 1e4:.0f}x 10k)",
        "holds": cross is not None and cross <= 20_000,
    })  # fmt: skip
    o = at(w.mean_rps)
    edge = o["edge-llamacpp"]
    others = [x.monthly_cost for k, x in o.items() if k != "edge-llamacpp"]
    cap = inp.edge_cap.rate_rps * inp.prices.dedicated.target_utilization * inp.prices.edge.max_devices
    cost = f"{edge.monthly_cost:,.0f}" if math.isfinite(edge.monthly_cost) else "cannot meet the SLO"
    rows.append({
        "claim": "edge llama.cpp: lowest infrastructure cost, capped throughput",
        "at": f"this workload ({w.requests_per_day:,.0f} req/day)",
        "model": f"{cost} vs cheapest other {min(others):,.0f} per month; capped at "
                 f"{cap:.3g} req/s ({inp.prices.edge.max_devices} devices)",
        "holds": math.isfinite(edge.monthly_cost) and edge.monthly_cost <= min(others),
    })  # fmt: skip
    return rows


def _crossover(inp: Inputs, a: str, b: str) -> float | None:
    """Smallest requests/day (1k..10M) at which option A costs more than option B."""
    grid = np.logspace(3, 7, 81)
    curve = cost_curve(inp, grid)
    for x, ca, cb in zip(grid, curve[a], curve[b], strict=True):
        if ca > cb:
            return float(x)
    return None
