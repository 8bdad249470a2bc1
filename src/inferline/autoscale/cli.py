"""`inferline autoscale`: simulate Kubernetes autoscaling of a SIMULATED engine fleet (mounted as `autoscale`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console

from inferline.autoscale.collect import CollectionConfig
from inferline.autoscale.configs import PRESET_HELP, PRESETS, AutoscalerConfig, load_autoscaler, manifest
from inferline.autoscale.des import SimRun, SimSettings, Simulation
from inferline.autoscale.hpa import K8S_VERSION, ControllerConfig
from inferline.autoscale.lifecycle import Dist, PodTimings
from inferline.autoscale.profiles import ProfileError, load_profile
from inferline.autoscale.report import print_compare, print_summary, rank, run_json, summarize, write_json
from inferline.autoscale.spec import HPASpec, MetricSourceType, MetricSpec, MetricTargetType, SpecError
from inferline.autoscale.traffic import SHAPES, Traffic, TrafficError, TrafficShape, load_trace, synthesize
from inferline.config import AdmissionConfig, ConfigError, QueuePolicy, load_config

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


class _Fail(Exception):
    pass


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


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
    logging.basicConfig(level=logging.WARNING)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # tables readable in logs and pipes
    try:
        prof = load_profile(profile).with_overrides(max_num_seqs=max_num_seqs, kv_blocks=kv_blocks)
        slots = max(1, round(0.75 * prof.max_num_seqs))
        for f in hpa or []:
            if not f.is_file():
                raise _Fail(f"--hpa {f}: no such file")
        items = [*(str(p) for p in hpa or []), *(preset or [])]
        if compare:
            items += [c.strip() for c in compare.split(",") if c.strip()]
        if not items:
            items = ["seed"]
        configs = [_autoscaler(item, slots) for item in items]
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            configs = [_renamed(c, f"{c.name}#{i + 1}") for i, c in enumerate(configs)]
        timings = PodTimings(
            schedule=Dist.parse(schedule_time, "--schedule-time"),
            pull=Dist.parse(pull_time, "--pull-time"),
            load=Dist.parse(load_time, "--load-time"),
            probe_period_s=probe_period,
            discovery_s=discovery_delay,
            drain_grace_s=drain_grace,
        )
        admission = _admission(config, queue_max_depth, queue_timeout, queue_policy)
        tr = _traffic(traffic, duration, prompt_tokens, output_tokens, seed)
        fits = tr.clipped(min(prof.max_model_len, prof.kv_tokens))
        if len(fits) < len(tr):
            console.print(
                f"[yellow]note:[/] {len(tr) - len(fits)} requests longer than the engine's context were dropped"
            )
        if not len(fits):
            raise _Fail(f"no request of the traffic fits the engine's context ({prof.max_model_len} tokens)")
        settings = SimSettings(
            profile=prof,
            admission=admission,
            kv_admit_ratio=kv_admit_ratio,
            timings=timings,
            controller=ControllerConfig(
                sync_period, tolerance, downscale_stabilization, configurable_tolerance=configurable_tolerance
            ),
            collection=CollectionConfig(scrape_interval, dcgm_interval, 1.0, adapter_delay),
            initial_replicas=initial_replicas,
            slo_ttft_s=slo_ttft / 1000.0,
            seed=seed,
        )
    except (SpecError, TrafficError, ProfileError, ConfigError, ValueError, _Fail) as exc:
        _fail(str(exc))
    runs: list[SimRun] = []
    summaries: list[dict[str, Any]] = []
    for cfg in configs:
        if not quiet:
            console.print(f"[dim]simulating {cfg.name}: {cfg.describe()} ...[/]")
        run = Simulation(fits, cfg, settings).run()
        runs.append(run)
        s = summarize(run)
        summaries.append(s)
        if not quiet or len(configs) == 1:
            print_summary(console, s)
    if len(configs) > 1:
        print_compare(console, summaries)
    if out is not None:
        _write(out, runs, summaries, bin_seconds, console)


def _autoscaler(item: str, slots: int) -> AutoscalerConfig:
    if item.startswith("static:"):
        try:
            n = int(item.split(":", 1)[1])
        except ValueError:
            raise SpecError(f"{item}: static:N needs a whole number of replicas") from None
        if n < 1:
            raise SpecError(f"{item}: static:N needs N >= 1")
        spec = HPASpec(
            n,
            n,
            (MetricSpec(MetricSourceType.EXTERNAL, "inferline_queue_depth", MetricTargetType.AVERAGE_VALUE, 1000),),
            name=item,
        )
        return AutoscalerConfig(item, hpa=spec, source="fixed replicas")
    if item not in PRESETS and not Path(item).exists():
        raise SpecError(f"{item!r} is neither a preset ({', '.join(PRESETS)}, static:N) nor a file")
    return load_autoscaler(item, slots)


def _renamed(c: AutoscalerConfig, name: str) -> AutoscalerConfig:
    return AutoscalerConfig(name, c.hpa, c.keda, c.source, c.values)


def _admission(
    path: Path | None, depth: int | None, timeout: float | None, policy: QueuePolicy | None
) -> AdmissionConfig:
    base = load_config(path).admission if path is not None else AdmissionConfig()
    updates: dict[str, Any] = {}
    if depth is not None:
        updates["queue_max_depth"] = depth
    if timeout is not None:
        updates["queue_timeout_s"] = timeout
    if policy is not None:
        updates["policy"] = policy
    return base.model_copy(update=updates) if updates else base


def _traffic(spec: str, duration: float | None, prompt: str, output: str, seed: int) -> Traffic:
    if spec.split(":", 1)[0] not in SHAPES:
        tr = load_trace(Path(spec))
        if duration is not None:
            keep = tr.arrival_s < duration
            tr = Traffic(
                tr.arrival_s[keep],
                tr.prompt_tokens[keep],
                tr.output_tokens[keep],
                tr.max_tokens[keep],
                tr.source,
                duration,
            )
            if not len(tr):
                raise TrafficError(f"trace {spec} has no requests in the first {duration:g} s")
        return tr
    return synthesize(
        TrafficShape.parse(spec),
        duration if duration is not None else 1800.0,
        Dist.parse(prompt, "--prompt-tokens"),
        Dist.parse(output, "--output-tokens"),
        seed,
    )


def _write(out: Path, runs: list[SimRun], summaries: list[dict[str, Any]], bin_s: float, console: Console) -> None:
    from inferline.autoscale.plots import compare_plot, run_plot, slug

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        written.append(run_plot(run, out / f"{slug(run.autoscaler.name)}.png", bin_s))
    if len(runs) > 1:
        written.append(compare_plot(runs, out / "compare.png", bin_s))
    payload = {
        "schema": "inferline.autoscale/1",
        "kubernetes": K8S_VERSION,
        "ranking": [s["name"] for s in rank(summaries)],
        "runs": [run_json(r, s, bin_s) for r, s in zip(runs, summaries, strict=True)],
    }
    write_json(out / "results.json", payload)
    written.append(out / "results.json")
    console.print("wrote " + ", ".join(str(p) for p in written))


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
        int, typer.Option(help="Engine max_num_seqs, for presets that target 75% of the slots.", min=1)
    ] = 256,
) -> None:
    """Print the autoscaling/v2 HorizontalPodAutoscaler (or KEDA ScaledObject) that SOURCE stands for, as YAML:
    what `simulate` models, ready for kubectl apply."""
    try:
        cfg = _autoscaler(source, max(1, round(0.75 * max_num_seqs)))
    except SpecError as exc:
        _fail(str(exc))
    typer.echo(yaml.safe_dump(manifest(cfg, target), sort_keys=False), nl=False)
