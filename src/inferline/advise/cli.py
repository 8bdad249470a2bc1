"""`inferline advise`: the seed's deployment decision matrix as a calculator (mounted as `advise`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

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
from inferline.advise.workload import Quality, WorkloadError, load_workload
from inferline.autoscale.profiles import ProfileError, load_profile, profile_to_dict

__all__ = ["app"]

app = typer.Typer(
    help="Which deployment fits a workload, and what it costs: dedicated vLLM, vLLM + proxy, serverless, "
    "managed API or edge llama.cpp, sized with inferline's SIMULATED engine model.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.callback(invoke_without_command=True)
def advise(
    workload: Annotated[
        Path | None, typer.Option(help="Workload YAML (keys as the flags below, with underscores); flags override it.")
    ] = None,
    requests_per_day: Annotated[float | None, typer.Option(help="Requests per day.", min=0)] = None,
    peak_rps: Annotated[
        float | None, typer.Option(help="Busiest-hour rate, req/s (default: 3 x the daily mean).", min=0)
    ] = None,
    prompt_tokens: Annotated[
        str | None, typer.Option(help="Prompt length: N or a distribution, e.g. lognormal:512:0.5 (default 512).")
    ] = None,
    output_tokens: Annotated[str | None, typer.Option(help="Output length: N or a distribution (default 256).")] = None,
    ttft_slo: Annotated[
        float | None, typer.Option(help="p95 time-to-first-token SLO, ms (default 800).", min=1)
    ] = None,
    tpot_slo: Annotated[
        float | None, typer.Option(help="p95 time-per-output-token SLO, ms (default: none).", min=0.1)
    ] = None,
    quality: Annotated[
        Quality | None, typer.Option(help="chat, summarization or reasoning (reasoning rules out small models).")
    ] = None,
    offline: Annotated[
        bool | None, typer.Option("--offline/--online", help="Must run without internet access.")
    ] = None,
    compliance: Annotated[
        bool | None,
        typer.Option("--compliance/--no-compliance", help="Prompts must not leave your network."),
    ] = None,
    needs_routing: Annotated[
        bool | None,
        typer.Option("--needs-routing/--no-routing", help="Several models, fallback, or per-key limits needed."),
    ] = None,
    prices: Annotated[
        Path | None, typer.Option(help=f"Prices YAML (default: the bundled EXAMPLE, {EXAMPLE_PRICES.name}).")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Engine profile of one dedicated GPU replica (a sim profile or a file; default: prices')."),
    ] = None,
    profile_from: Annotated[
        Path | None,
        typer.Option(help="Fit the dedicated replica's profile to an `inferline bench` JSON (your hardware)."),
    ] = None,
    max_num_seqs: Annotated[int, typer.Option(help="With --profile-from: the engine's --max-num-seqs.", min=1)] = 256,
    kv_blocks: Annotated[
        int | None,
        typer.Option(help="With --profile-from: KV-cache size in 16-token blocks (default: 2048/slot).", min=1),
    ] = None,
    write_profile: Annotated[
        Path | None, typer.Option(help="Write the fitted profile here (YAML; reusable with --profile).")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the cost-against-traffic PNG here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the whole advice as JSON here.")] = None,
    check_claims: Annotated[
        bool, typer.Option("--check-claims", help="Also test the seed note's cost claims against this model.")
    ] = False,
    cache: Annotated[bool, typer.Option(help="Reuse capacity searches cached in ~/.cache/inferline.")] = True,
) -> None:
    """Size every option of the decision matrix for one workload (SLO capacity from simulated engines, plus
    autoscaling headroom), price it, rank it, and say which to use and why."""
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
