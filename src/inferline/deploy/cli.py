"""`inferline deploy`: render the Helm chart's values (and manifests) from inferline.yaml; print its schema."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml

from inferline.config import ConfigError, load_config, read_yaml_mapping

__all__ = ["app"]

app = typer.Typer(
    help="Deploy on Kubernetes: the Helm chart deploy/helm/inferline, its values rendered from inferline.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CHART_DIR = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "inferline"
TOOLS_HELM = Path.home() / ".cache" / "inferline" / "deploy-tools" / "bin" / "helm"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm-style deep merge (maps merge, other values replace), except `engines`, merged entry by `name`."""
    out = dict(base)
    for key, value in override.items():
        if key == "engines" and isinstance(value, list) and isinstance(out.get(key), list):
            by_name = {e.get("name"): e for e in out[key] if isinstance(e, dict)}
            merged = []
            for e in value:
                if not isinstance(e, dict) or "name" not in e:
                    _fail("--values: every engines[] entry needs a `name` (the engine it overrides or adds)")
                merged.append(merge_values(by_name.pop(e["name"], {}), e))
            out[key] = [e for e in out[key] if e.get("name") in by_name] + merged
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        return read_yaml_mapping(path)
    except ConfigError as exc:
        _fail(f"{what} {exc}")


@app.command()
def render(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="inferline.yaml with a `deploy:` section (the gateway's own file).")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write values.yaml (and manifests.yaml) into.")],
    values: Annotated[
        Path | None,
        typer.Option(
            "--values",
            "-f",
            help="Chart-value overrides merged on top (maps deep-merge; engines[] entries merge by name).",
        ),
    ] = None,
    manifests: Annotated[
        bool, typer.Option(help="Also run `helm template` on the chart and write manifests.yaml.")
    ] = False,
    release: Annotated[str, typer.Option(help="Release name for --manifests.")] = "inferline",
    namespace: Annotated[str, typer.Option(help="Namespace for --manifests.")] = "inferline",
    helm: Annotated[
        str | None, typer.Option(help="helm binary for --manifests (default: PATH, then scripts/deploy/tools.sh's).")
    ] = None,
    chart: Annotated[Path, typer.Option(help="The chart directory for --manifests.")] = CHART_DIR,
) -> None:
    """Render the chart's values from the same inferline.yaml the gateway reads.

    Models, fallbacks, limits and API keys come from the file as the gateway reads it; images, GPUs, scaling
    and storage from its `deploy:` section. Deployed models' engines are found in the cluster through their
    headless Service, so their local `backends` stay out of the cluster config. Every problem is printed with
    its field path and the command exits 1.
    """
    from inferline.deploy.render import RenderError, render_values

    try:
        cfg = load_config(config)  # file, YAML and schema problems: one line each
    except ConfigError as exc:
        _fail(str(exc))
    raw = _read_yaml(config, "config")
    try:
        rendered = render_values(raw, cfg)
    except RenderError as exc:
        _fail(f"{config}: {exc}")
    result = rendered.values
    if values is not None:
        result = merge_values(result, _read_yaml(values, "values"))
    if out.exists() and not out.is_dir():
        _fail(f"--out {out}: is a file; give a directory (it is created if missing)")
    binary: str | None = None
    if manifests:  # before anything is written: a missing helm must not leave half the output behind
        binary = helm or shutil.which("helm") or (str(TOOLS_HELM) if TOOLS_HELM.exists() else None)
        if binary is None:
            _fail("--manifests needs helm: put it on PATH, pass --helm, or run scripts/deploy/tools.sh")
        if shutil.which(binary) is None:
            _fail(f"--helm {binary}: not an executable file")
        if not (chart / "Chart.yaml").exists():
            _fail(f"--manifests: no chart at {chart}; pass --chart DIR (deploy/helm/inferline of a checkout)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"--out {out}: cannot create it: {exc.strerror or exc}")
    values_path = out / "values.yaml"
    header = f"# Rendered by `inferline deploy render --config {config}`; edit that file, not this one.\n"
    values_path.write_text(header + yaml.safe_dump(result, sort_keys=False, width=120))
    for note in rendered.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {values_path}")
    if manifests:
        assert binary is not None
        cmd = [binary, "template", release, str(chart), "-n", namespace, "-f", str(values_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HELM_NO_PLUGINS": "1"})
        if proc.returncode != 0:
            _fail(f"helm template failed: {proc.stderr.strip()}")
        (out / "manifests.yaml").write_text(proc.stdout)
        typer.echo(f"wrote {out / 'manifests.yaml'}")


@app.command()
def schema() -> None:
    """Print the chart's values.schema.json (gateway.config checked against the gateway's own config schema)."""
    from inferline.deploy.schema import render_schema

    typer.echo(render_schema(), nl=False)
