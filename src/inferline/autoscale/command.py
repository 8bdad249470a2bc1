"""The work behind `inferline autoscale` (kept out of cli.py so `inferline` starts without the simulator)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from rich.console import Console

from inferline.autoscale import K8S_VERSION
from inferline.autoscale.collect import CollectionConfig
from inferline.autoscale.configs import AutoscalerConfig, manifest, resolve_autoscaler
from inferline.autoscale.des import SimRun, SimSettings, Simulation
from inferline.autoscale.hpa import ControllerConfig
from inferline.autoscale.lifecycle import Dist, PodTimings
from inferline.autoscale.profiles import ProfileError, load_profile
from inferline.autoscale.report import print_compare, print_summary, rank, run_json, summarize, write_json
from inferline.autoscale.spec import SpecError
from inferline.autoscale.traffic import SHAPES, Traffic, TrafficError, TrafficShape, load_trace, synthesize
from inferline.config import AdmissionConfig, ConfigError, QueuePolicy, load_config

__all__ = ["render", "simulate"]


class _Fail(Exception):
    pass


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def simulate(
    traffic: Any,
    duration: Any,
    prompt_tokens: Any,
    output_tokens: Any,
    hpa: Any,
    preset: Any,
    compare: Any,
    profile: Any,
    max_num_seqs: Any,
    kv_blocks: Any,
    schedule_time: Any,
    pull_time: Any,
    load_time: Any,
    probe_period: Any,
    discovery_delay: Any,
    drain_grace: Any,
    initial_replicas: Any,
    scrape_interval: Any,
    dcgm_interval: Any,
    adapter_delay: Any,
    sync_period: Any,
    sync_phase: Any,
    tolerance: Any,
    downscale_stabilization: Any,
    configurable_tolerance: Any,
    config: Any,
    queue_max_depth: Any,
    queue_timeout: Any,
    queue_policy: Any,
    kv_admit_ratio: Any,
    slo_ttft: Any,
    bin_seconds: Any,
    seed: Any,
    out: Any,
    quiet: Any,
) -> None:
    logging.basicConfig(level=logging.WARNING)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # tables readable in logs and pipes
    try:
        prof = load_profile(profile).with_overrides(max_num_seqs=max_num_seqs, kv_blocks=kv_blocks)
        for f in hpa or []:
            if f.is_dir():
                raise _Fail(f"--hpa {f}: is a directory; give the YAML file itself")
            if not f.is_file():
                raise _Fail(f"--hpa {f}: no such file")
        items = [*(str(p) for p in hpa or []), *(preset or [])]
        if compare:
            items += [c.strip() for c in compare.split(",") if c.strip()]
        if not items:
            items = ["seed"]
        configs = [resolve_autoscaler(item, prof.max_num_seqs) for item in items]
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
            hpa_phase_s=sync_phase,
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
        if not Path(spec).exists() and ":" in spec:  # meant as a shape, misspelt: say so, not "no such file"
            raise TrafficError(
                f"unknown traffic shape {spec.split(':', 1)[0]!r}; known: {', '.join(SHAPES)} (or a trace file)"
            )
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


def render(source: Any, target: Any, max_num_seqs: Any) -> None:
    try:
        cfg = resolve_autoscaler(source, max_num_seqs)
    except SpecError as exc:
        _fail(str(exc))
    typer.echo(yaml.safe_dump(manifest(cfg, target), sort_keys=False), nl=False)
