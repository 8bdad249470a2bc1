"""The work behind `inferline advise` (kept out of cli.py so `inferline` starts without the simulator)."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import orjson
import typer
import yaml
from rich.console import Console
from rich.table import Table

from inferline.advise.bench_profile import BenchProfileError, profile_from_bench
from inferline.advise.capacity import slo_capacity
from inferline.advise.options import rank_options
from inferline.advise.prices import EXAMPLE_PRICES, PricesError, load_prices
from inferline.advise.report import Inputs, claims, print_advice, recommendation
from inferline.advise.workload import WorkloadError, load_workload
from inferline.autoscale.profiles import ProfileError, load_profile, profile_to_dict

__all__ = ["advise"]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def advise(
    workload: Any,
    requests_per_day: Any,
    peak_rps: Any,
    prompt_tokens: Any,
    output_tokens: Any,
    ttft_slo: Any,
    tpot_slo: Any,
    quality: Any,
    offline: Any,
    compliance: Any,
    needs_routing: Any,
    prices: Any,
    profile: Any,
    profile_from: Any,
    max_num_seqs: Any,
    kv_blocks: Any,
    write_profile: Any,
    plot: Any,
    json_out: Any,
    check_claims: Any,
    cache: Any,
) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=180)
    overrides: dict[str, Any] = {
        "requests_per_day": requests_per_day,
        "peak_rps": peak_rps,
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "ttft_slo_ms": ttft_slo,
        "tpot_slo_ms": tpot_slo,
        "quality": quality,
        "offline": offline,
        "compliance": compliance,
        "needs_routing": needs_routing,
    }
    try:
        w = load_workload(workload, overrides)
        p = load_prices(prices)
        notes: list[str] = []
        if profile_from is not None:
            gpu_profile, notes = profile_from_bench(profile_from, max_num_seqs=max_num_seqs, kv_blocks=kv_blocks)
            if write_profile is not None:
                write_profile.write_text(yaml.safe_dump(profile_to_dict(gpu_profile), sort_keys=False))
                notes.append(f"profile written to {write_profile}")
        else:
            gpu_profile = load_profile(profile or p.dedicated.profile)
        edge_profile = load_profile(p.edge.profile)
    except (WorkloadError, PricesError, ProfileError, BenchProfileError, ValueError) as exc:
        _fail(str(exc))
    for n in notes:
        console.print(f"[dim]profile: {n}[/]")
    with console.status("searching the SLO capacity of one replica (simulated) ..."):
        gpu_cap = slo_capacity(gpu_profile, w.prompt, w.output, w.ttft_slo_ms, w.tpot_slo_ms, cache=cache)
        edge_cap = slo_capacity(edge_profile, w.prompt, w.output, w.ttft_slo_ms, w.tpot_slo_ms, cache=cache)
    inp = Inputs(w, p, gpu_cap, gpu_profile, edge_cap, edge_profile)
    ranked = rank_options(inp.options())
    label = str(prices) if prices is not None else "the bundled EXAMPLE prices, edit a copy and pass --prices"
    print_advice(console, inp, ranked, label)
    checked = claims(inp) if check_claims else []
    if checked:
        t = Table(title="the seed note's cost claims against this model", title_justify="left")
        for col in ("claim", "at", "this model", "holds"):
            t.add_column(col)
        for row in checked:
            t.add_row(row["claim"], row["at"], row["model"], "yes" if row["holds"] else "no")
        console.print(t)
    if plot is not None:
        from inferline.advise.plots import cost_plot

        console.print(f"wrote {cost_plot(inp, plot)}")
    if json_out is not None:
        best, reasons = recommendation(ranked, w, p)
        payload = {
            "schema": "inferline.advise/1",
            "workload": w.model_dump(mode="json"),
            "prices_as_of": p.as_of,
            "prices_file": str(prices or EXAMPLE_PRICES),
            "capacity": {"dedicated": gpu_cap.to_json(), "edge": edge_cap.to_json()},
            "profile": profile_to_dict(gpu_profile),
            "options": [o.to_json() for o in ranked],
            "recommendation": None if best is None else best.key,
            "reasons": reasons,
            "claims": checked,
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        console.print(f"wrote {json_out}")
