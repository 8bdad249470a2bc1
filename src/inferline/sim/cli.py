"""`inferline sim`: serve a fleet of simulated vLLM-compatible engines (mounted by the root CLI as `sim`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from inferline.sim.engine import OutputLen
from inferline.sim.fleet import SimFleet, run_fleet
from inferline.sim.profiles import PROFILES
from inferline.sim.scheduler import SchedulingPolicy

__all__ = ["app"]

app = typer.Typer(
    help="Run SIMULATED vLLM-compatible engines (no model) for routing, admission and autoscaling tests.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

_PROFILE_NAMES = ", ".join(sorted(PROFILES))


@app.callback(invoke_without_command=True)
def sim(
    port: Annotated[int, typer.Option(help="First port; engine i listens on PORT+i (0: free ports).", min=0)] = 8100,
    count: Annotated[int, typer.Option(help="How many engines to run in this process.", min=1, max=1000)] = 1,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    profile: Annotated[str, typer.Option(help=f"Performance model: {_PROFILE_NAMES}.")] = "cpu-smollm2",
    model: Annotated[str, typer.Option(help="Model name the engines serve (/v1/models).")] = "smollm2",
    max_num_seqs: Annotated[
        int | None, typer.Option(help="Running-batch slots per engine (default: the profile's).", min=1)
    ] = None,
    kv_blocks: Annotated[
        int | None,
        typer.Option(help="KV-cache blocks of 16 tokens per engine (default: the profile's).", min=1),
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(help="Context limit per request (default: the profile's, capped by KV).", min=2),
    ] = None,
    scheduling_policy: Annotated[
        SchedulingPolicy,
        typer.Option(help="fcfs, or priority (request field `priority`, lower runs first).", case_sensitive=False),
    ] = SchedulingPolicy.FCFS,
    seed: Annotated[int, typer.Option(help="Seed for sampled output lengths (engine i uses seed and i).")] = 0,
    time_scale: Annotated[
        float,
        typer.Option(help="Multiply every modelled duration by this (0.1 = ten times faster).", min=0.0),
    ] = 1.0,
    output_len: Annotated[
        str,
        typer.Option(help="Output length: max (= max_tokens, 'length'), uniform, or exp:MEAN (shorter: 'stop')."),
    ] = "max",
    prefix_caching: Annotated[
        bool,
        typer.Option(
            "--prefix-caching",
            help="Model vLLM's automatic prefix caching in each engine's KV cache (on by default in vLLM V1).",
        ),
    ] = False,
    duration: Annotated[
        float, typer.Option(help="Stop after this many seconds (0: run until SIGINT/SIGTERM).", min=0.0)
    ] = 0.0,
) -> None:
    """Serve COUNT simulated engines on PORT..PORT+COUNT-1: OpenAI API, /health, /metrics with vLLM's names.

    Timing follows the profile's model of a real engine (continuous batching, chunked prefill, paged KV
    cache, preemption). Nothing here runs a model: the text is filler, the token counts are estimates.
    """
    if profile not in PROFILES:
        raise typer.BadParameter(f"unknown profile {profile!r}; known: {_PROFILE_NAMES}", param_hint="--profile")
    try:
        lengths = OutputLen.parse(output_len)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--output-len") from None
    fleet = SimFleet(
        profile,
        count,
        host=host,
        port=port,
        model=model,
        max_num_seqs=max_num_seqs,
        kv_blocks=kv_blocks,
        max_model_len=max_model_len,
        policy=scheduling_policy,
        seed=seed,
        time_scale=time_scale,
        output_len=lengths,
        prefix_caching=prefix_caching,
    )
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run_fleet(fleet, duration_s=duration))
    except OSError as exc:  # most often: a port in PORT..PORT+COUNT-1 is taken
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _loop_factory() -> type[asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: type[asyncio.AbstractEventLoop] = uvloop.Loop
    return factory
