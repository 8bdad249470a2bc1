"""`inferline autoscale`: simulate Kubernetes autoscaling of a SIMULATED engine fleet (mounted as `autoscale`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inferline.autoscale import K8S_VERSION
from inferline.autoscale.presets import PRESET_HELP
from inferline.config import QueuePolicy

__all__ = ["app"]

app = typer.Typer(
    help="Simulate Kubernetes autoscaling (HPA as in Kubernetes " + K8S_VERSION + ", or KEDA) of a fleet of "
    "SIMULATED engines behind inferline's gateway, in simulated time.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)

_PRESETS = "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items())
_TRAFFIC_HELP = (
    "A shape (rates in req/s, times in s): constant:rate=R | step:base=R0,peak=R1,at=T | "
    "ramp:base=R0,peak=R1,at=T,for=D | spike:base=R0,peak=R1,at=T,for=D | diurnal:base=R0,peak=R1,period=P; "
    "or a trace file: .csv/.jsonl (arrival_s, prompt_tokens, output_tokens[, max_tokens]) or an "
    "`inferline bench` .json saved with --save-requests."
)
_DIST = "Seconds: N, uniform:LO:HI, normal:MEAN:SD, lognormal:MEAN:CV or exp:MEAN."


@app.command("simulate")
def simulate(
    traffic: Annotated[
        str, typer.Option("--traffic", "-t", help=_TRAFFIC_HELP)
    ] = "spike:base=20,peak=60,at=300,for=900",
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds of arrivals for a shape (default 1800); a trace plays in full.", min=1.0),
    ] = None,
    prompt_tokens: Annotated[
        str, typer.Option(help="Prompt length of synthetic traffic: N or a distribution (lognormal:512:0.5 ...).")
    ] = "512",
    output_tokens: Annotated[
        str, typer.Option(help="Output length of synthetic traffic: N or a distribution.")
    ] = "256",
    hpa: Annotated[
        list[Path] | None,
        typer.Option(
            "--hpa",
            help="An autoscaling/v2 HorizontalPodAutoscaler manifest, a KEDA ScaledObject, or Helm values with an "
            "`autoscaling:` block (repeat to compare).",
            exists=False,
        ),
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option(help=f"A built-in configuration (repeat to compare): {_PRESETS}; static:N = N fixed replicas."),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated presets and/or files to run on the same traffic and rank (SLO minutes, "
            "then GPU-hours), e.g. seed,queue,running."
        ),
    ] = None,
    profile: Annotated[
        str, typer.Option(help="Engine profile: h100-llama8b, cpu-smollm2, or a YAML/JSON profile file.")
    ] = "h100-llama8b",
    max_num_seqs: Annotated[int | None, typer.Option(help="Override the profile's max_num_seqs.", min=1)] = None,
    kv_blocks: Annotated[
        int | None, typer.Option(help="Override the profile's KV-cache blocks (16 tokens).", min=1)
    ] = None,
    schedule_time: Annotated[str, typer.Option(help="Pod waits for a node (incl. node provisioning). " + _DIST)] = "2",
    pull_time: Annotated[str, typer.Option(help="Image pull, GPU already held. " + _DIST)] = "30",
    load_time: Annotated[str, typer.Option(help="Engine start and model load until /health passes. " + _DIST)] = "60",
    probe_period: Annotated[
        float, typer.Option(help="Readiness probe period (s): Ready at the first probe after load.", min=0)
    ] = 5.0,
    discovery_delay: Annotated[
        float, typer.Option(help="Seconds from Ready to the gateway routing to the pod.", min=0)
    ] = 2.0,
    drain_grace: Annotated[
        float,
        typer.Option(help="terminationGracePeriodSeconds: a draining pod's requests are cut off after this.", min=0),
    ] = 30.0,
    initial_replicas: Annotated[
        int | None, typer.Option(help="Ready replicas at t=0 (default: the autoscaler's minimum, at least 1).", min=0)
    ] = None,
    scrape_interval: Annotated[float, typer.Option(help="Prometheus scrape interval (s).", min=0.1)] = 15.0,
    dcgm_interval: Annotated[float, typer.Option(help="DCGM exporter collection interval (s).", min=0.1)] = 30.0,
    adapter_delay: Annotated[
        float, typer.Option(help="Extra staleness of what the metrics adapter serves the HPA (s).", min=0)
    ] = 0.0,
    sync_period: Annotated[float, typer.Option(help="--horizontal-pod-autoscaler-sync-period (s).", min=1)] = 15.0,
    sync_phase: Annotated[
        float,
        typer.Option(
            help="Seconds from the start of the traffic to the autoscaler's first pass (then every sync period); "
            "set it to a live controller's phase to replay a live run.",
            min=0,
        ),
    ] = 5.0,
    tolerance: Annotated[float, typer.Option(help="--horizontal-pod-autoscaler-tolerance.", min=0)] = 0.1,
    downscale_stabilization: Annotated[
        float,
        typer.Option(
            help="--horizontal-pod-autoscaler-downscale-stabilization (s): window when `behavior` leaves it unset.",
            min=0,
        ),
    ] = 300.0,
    configurable_tolerance: Annotated[
        bool,
        typer.Option(
            help="Feature gate HPAConfigurableTolerance: honour behavior.*.tolerance (scaleDownUtilization needs it)."
        ),
    ] = True,
    config: Annotated[
        Path | None,
        typer.Option(
            help="An inferline YAML config: its `admission` section shapes the gateway queue.", dir_okay=False
        ),
    ] = None,
    queue_max_depth: Annotated[
        int | None, typer.Option(help="Gateway queue depth limit (default 1024).", min=0)
    ] = None,
    queue_timeout: Annotated[
        float | None, typer.Option(help="Gateway queue timeout in s (default 30).", min=0.1)
    ] = None,
    queue_policy: Annotated[
        QueuePolicy | None, typer.Option(help="priority (shortest token budget first, with aging) or fcfs.")
    ] = None,
    kv_admit_ratio: Annotated[
        float,
        typer.Option(help="Dispatch to an engine only below this KV-cache use (the seed's 85%).", min=0.01, max=1.0),
    ] = 0.85,
    slo_ttft: Annotated[float, typer.Option(help="TTFT SLO in ms (the seed's alert: 800).", min=1)] = 800.0,
    bin_seconds: Annotated[
        float, typer.Option("--bin", help="TTFT-over-time bin width (s) for plots and JSON.", min=1)
    ] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed for arrivals, token counts and pod timings.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Write results.json and PNG plots into this directory.", file_okay=False),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the comparison table / summary.")] = False,
) -> None:
    """Run traffic through a SIMULATED fleet (inferline's engine model) scaled by an HPA or KEDA, exactly as the
    Kubernetes controller computes it; report SLO minutes, reaction times, rejections and GPU-hours.

    Nothing here runs a model or a cluster: engines are inferline.sim's performance profiles, pods start and
    drain with the timings given, metrics travel exporter -> Prometheus -> adapter with their delays.
    """
    options = dict(locals())  # every option, before anything else is bound here
    from inferline.autoscale.command import simulate as run

    run(**options)


@app.command("render")
def render(
    source: Annotated[
        str,
        typer.Argument(
            help="A preset name or a YAML file (HPA manifest, ScaledObject, or Helm `autoscaling:` values)."
        ),
    ] = "seed",
    target: Annotated[str, typer.Option(help="Name of the Deployment the autoscaler scales.")] = "inferline-engine",
    max_num_seqs: Annotated[
        int, typer.Option(help="Engine max_num_seqs, for presets whose targets are a share of it.", min=1)
    ] = 256,
) -> None:
    """Print the autoscaling/v2 HorizontalPodAutoscaler (or KEDA ScaledObject) that SOURCE stands for, as YAML:
    what `simulate` models, ready for kubectl apply."""
    options = dict(locals())  # every option, before anything else is bound here
    from inferline.autoscale.command import render as run

    run(**options)
