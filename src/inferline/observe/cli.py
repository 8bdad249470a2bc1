"""`inferline observe`: generate the alert rules, the Grafana dashboard and a Prometheus scrape config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app"]

app = typer.Typer(
    help="Generate observability artefacts from code: alert rules, Grafana dashboard, Prometheus scrape config. "
    "See docs/observability.md.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file instead of standard output.", dir_okay=False)
]


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    except OSError as exc:
        typer.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {output}", err=True)


@app.command()
def rules(
    output: OutputOpt = None,
    prometheus_rule: Annotated[
        bool,
        typer.Option(
            "--prometheus-rule", help="Emit a prometheus-operator PrometheusRule object instead of a rules file."
        ),
    ] = False,
    name: Annotated[str, typer.Option(help="PrometheusRule: metadata.name.")] = "inferline",
    namespace: Annotated[str | None, typer.Option(help="PrometheusRule: metadata.namespace (default: none).")] = None,
    runbook_base: Annotated[
        str, typer.Option(help="Prefix of every runbook_url annotation (a URL to docs/runbooks.md).")
    ] = "docs/runbooks.md",
    gateway_job: Annotated[
        str, typer.Option(help="Prometheus job label of the gateway's scrape target (InferlineGatewayDown).")
    ] = "inferline",
    scale: Annotated[
        float,
        typer.Option(
            help="Multiply every rate window and `for` by this. FOR TESTS ONLY: 1 keeps the shipped meaning.",
            min=0.0001,
        ),
    ] = 1.0,
    interval: Annotated[
        float | None, typer.Option(help="Rule group evaluation interval in seconds (default: Prometheus' global).")
    ] = None,
) -> None:
    """Print the alert rules (TTFT, KV use, fragmentation, queue, backends, errors, 429s, limit store)."""
    from inferline.observe.rules import render_prometheus_rule, render_rules

    kwargs: dict[str, Any] = {
        "scale": scale,
        "interval_s": interval,
        "runbook_base": runbook_base,
        "gateway_job": gateway_job,
    }
    if prometheus_rule:
        _emit(render_prometheus_rule(name=name, namespace=namespace, **kwargs), output)
    else:
        _emit(render_rules(**kwargs), output)


@app.command()
def dashboard(output: OutputOpt = None) -> None:
    """Print the Grafana dashboard JSON (traffic, latency, capacity, routing rows)."""
    from inferline.observe.dashboard import render_dashboard

    _emit(render_dashboard(), output)


@app.command("scrape-config")
def scrape_config(
    gateway: Annotated[
        list[str],
        typer.Option(help="Gateway URL (`inferline serve`), e.g. http://127.0.0.1:8080. Repeat for several."),
    ],
    engine: Annotated[
        list[str] | None,
        typer.Option(help="Engine URL (vLLM or `inferline sim`) whose vllm:* series to scrape. Repeatable."),
    ] = None,
    dcgm: Annotated[
        list[str] | None,
        typer.Option(
            help="DCGM exporter URL (http://node:9400), or a simulated engine's http://HOST:PORT/dcgm/metrics. "
            "Repeatable."
        ),
    ] = None,
    rules_file: Annotated[
        list[str] | None, typer.Option("--rules", help="Rules file to load (rule_files:). Repeatable.")
    ] = None,
    interval: Annotated[float, typer.Option(help="Scrape interval in seconds.", min=0.001)] = 15.0,
    evaluation_interval: Annotated[
        float | None, typer.Option(help="Rule evaluation interval in seconds (default: the scrape interval).")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Print a prometheus.yml scraping gateways, engines (vllm_x renamed back to vllm:x) and DCGM exporters."""
    from inferline.observe.scrape import render_scrape_config

    try:
        text = render_scrape_config(
            gateways=gateway,
            engines=engine or [],
            dcgm=dcgm or [],
            scrape_interval_s=interval,
            evaluation_interval_s=evaluation_interval,
            rule_files=rules_file or [],
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _emit(text, output)


@app.command()
def generate(
    root: Annotated[
        Path, typer.Option(help="Repository root to write the checked-in artefacts under.", file_okay=False)
    ] = Path("."),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if any checked-in artefact is out of date.")
    ] = False,
) -> None:
    """Regenerate every checked-in artefact: deploy/prometheus/*, deploy/grafana/*, deploy/helm/inferline/files/*."""
    from inferline.observe.artefacts import ARTEFACTS
    from inferline.observe.artefacts import generate as gen

    stale = gen(root, check=check)
    for rel in ARTEFACTS:
        state = ("STALE" if check else "written") if rel in stale else "up to date"
        typer.echo(f"{rel}: {state}")
    if check and stale:
        typer.echo("error: run `inferline observe generate` and commit the result", err=True)
        raise typer.Exit(1)
