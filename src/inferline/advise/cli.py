"""`inferline advise`: the seed's deployment decision matrix as a calculator (mounted as `advise`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inferline.advise.workload import Quality

__all__ = ["app"]

app = typer.Typer(
    help="Which deployment fits a workload, and what it costs: dedicated vLLM, vLLM + proxy, serverless, "
    "managed API or edge llama.cpp, sized with inferline's SIMULATED engine model.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
        Path | None, typer.Option(help="Prices YAML (default: the bundled EXAMPLE, prices.example.yaml).")
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
    options = dict(locals())  # every option, before anything else is bound here
    from inferline.advise.command import advise as run

    run(**options)
