"""`inferline eval`: the typer sub-app (mounted by the root CLI as `eval`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer

from inferline.eval.compare import Comparison, Summary, compare, summarize
from inferline.eval.dataset import EvalSetError, load_eval_set, shipped_set_path
from inferline.eval.endpoint import EndpointError, EndpointSpec, parse_endpoint
from inferline.eval.gate import GateError, Term, parse_gate
from inferline.eval.report import render_markdown, results_json
from inferline.eval.runner import EndpointResult, load_results, run_eval
from inferline.eval.stats import BOOTSTRAP_SAMPLES

app = typer.Typer(
    name="eval",
    help="Run an eval set against OpenAI-compatible endpoints, baseline vs candidates; gate a rollout. "
    "See docs/eval.md.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_GATE_FAILED = 1
EXIT_ERROR = 2
REPORT = "report.md"
RESULTS = "results.json"
PLOT = "accuracy.png"


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(EXIT_ERROR)


@app.callback(invoke_without_command=True)
def eval_(
    ctx: typer.Context,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            "-e",
            help="NAME=URL[,model=M][,metrics=URL][,tokenize=URL][,logprobs=auto|echo|grammar|none][,key_env=VAR]; "
            "repeat for each side; the first (or --baseline) is the baseline. URL is the server root or its /v1. "
            "Two model names behind one gateway: -e base=http://gw:8080,model=a -e cand=http://gw:8080,model=b.",
        ),
    ] = None,
    eval_set: Annotated[
        Path | None, typer.Option("--set", help="JSONL eval set (docs/eval.md); default: the shipped set.")
    ] = None,
    baseline: Annotated[str | None, typer.Option(help="Name of the baseline endpoint (default: the first).")] = None,
    baseline_results: Annotated[
        Path | None,
        typer.Option(
            help="Reuse a baseline measured earlier: results.json of a previous run on the same set (its first "
            "endpoint, or --baseline NAME); every --endpoint is then a candidate. For baselines that cannot run "
            "beside the candidate (one vLLM at a time).",
        ),
    ] = None,
    gate: Annotated[
        str | None,
        typer.Option(help="Quality gate, e.g. 'accuracy_drop<=2pp,ppl_ratio<=1.05'; exit 1 if a candidate fails it."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Report directory (report.md, results.json, accuracy.png); replaced atomically.")
    ] = Path("eval-report"),
    category: Annotated[
        list[str] | None, typer.Option("--category", help="Only these categories (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most N items per category (quick runs).", min=1)] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight per endpoint.", min=1, max=64)] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds per request.", min=1)] = 120.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Bearer key for every endpoint (else key_env=VAR per endpoint).",
            envvar="INFERLINE_API_KEY",
            show_envvar=True,
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Title of the report and plot (default: the set's name).")] = None,
) -> None:
    """Score every item on every endpoint; write a markdown report with per-category deltas, intervals and a plot.

    Exit codes: 0 = done (and every candidate passed --gate), 1 = a candidate failed the gate, 2 = bad input or an
    endpoint that is down / failing (nothing is written then).
    """
    if ctx.invoked_subcommand is not None:
        return
    if not endpoint:
        raise _fail("give at least one --endpoint NAME=URL (see inferline eval --help)")
    try:
        specs = [parse_endpoint(e) for e in endpoint]
    except ValueError as exc:
        raise _fail(str(exc)) from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise _fail(f"endpoint names must be unique; got {', '.join(names)}")
    if baseline is not None and baseline_results is None:
        if baseline not in names:
            raise _fail(f"--baseline {baseline!r} is not an endpoint name ({', '.join(names)})")
        specs.sort(key=lambda s: s.name != baseline)
    terms: list[Term] = []
    if gate is not None:
        try:
            terms = parse_gate(gate)
        except GateError as exc:
            raise _fail(str(exc)) from None
        if len(specs) + (baseline_results is not None) < 2:
            raise _fail("--gate needs a baseline and at least one candidate endpoint")
    set_path = eval_set or shipped_set_path()
    try:
        items = load_eval_set(set_path)
    except EvalSetError as exc:
        raise _fail(str(exc)) from None
    if category:
        known = sorted({i.category for i in items})
        unknown = [c for c in category if c not in known]
        if unknown:
            raise _fail(f"unknown category {', '.join(unknown)} in {set_path} (has: {', '.join(known)})")
        items = [i for i in items if i.category in category]
    if limit:
        per: dict[str, int] = {}
        kept = []
        for i in items:
            per[i.category] = per.get(i.category, 0) + 1
            if per[i.category] <= limit:
                kept.append(i)
        items = kept
    prior = None
    if baseline_results is not None:
        try:
            prior = load_results(baseline_results, baseline, [i.id for i in items])
        except ValueError as exc:
            raise _fail(str(exc)) from None
        if prior.name in names:
            raise _fail(f"endpoint name {prior.name!r} is taken by the baseline from {baseline_results}")
    _check_out(out)

    def say(msg: str) -> None:
        typer.echo(f"eval: {msg}", err=True)

    say(f"{len(items)} items from {set_path}; {len(specs)} endpoint(s)")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.monotonic()
    try:
        results = asyncio.run(
            run_eval(items, specs, concurrency=concurrency, api_key=api_key, timeout_s=timeout, progress=say)
        )
    except EndpointError as exc:
        raise _fail(f"{exc} (no report written)") from None
    except KeyboardInterrupt:
        raise _fail("interrupted (no report written)") from None
    if prior is not None:
        say(f"baseline {prior.name}: {len(prior.items)} items from {baseline_results}")
        results.insert(0, prior)
    summaries = [summarize(r) for r in results]
    comparisons = [
        compare(results[0], r, summaries[0], s, terms) for r, s in zip(results[1:], summaries[1:], strict=True)
    ]
    meta = {
        "eval_set": str(set_path),
        "items": len(items),
        "started": started,
        "wall_s": time.monotonic() - t0,
        "concurrency": concurrency,
        "gate": gate,
        "baseline": results[0].name,
        "baseline_results": str(baseline_results) if baseline_results else None,
        "bootstrap_samples": BOOTSTRAP_SAMPLES,
        "endpoints": [_spec_meta(s) for s in specs],
    }
    name = title or set_path.stem
    _write(out, name, len(items), results, summaries, comparisons, gate, meta)
    for s in summaries:
        cats = ", ".join(f"{c} {a.value * 100:.0f}%" for c, a in s.categories.items() if a.n)
        typer.echo(
            f"{s.name:16s} accuracy {s.overall.value * 100:5.1f}% (n={s.overall.n}); {cats}; "
            f"ppl {s.ppl:.2f}; tok/s {s.tok_s:.1f}"
        )
    failed = False
    for c in comparisons:
        line = (
            f"{c.candidate} vs {c.baseline}: accuracy drop {c.accuracy_drop.fmt(100, 1, 'pp')}, "
            f"ppl ratio {c.ppl_ratio.fmt(1, 3).replace('+', '')}"
        )
        if c.passed is not None:
            line += (
                f" -> {'PASS' if c.passed else 'FAIL'} ({c.confidence * 100:.0f}% of resamples agree: "
                f"{c.confidence_words})"
            )
            failed |= not c.passed
        typer.echo(line)
    typer.echo(f"report: {out / REPORT}")
    if failed:
        raise typer.Exit(EXIT_GATE_FAILED)


def _spec_meta(s: EndpointSpec) -> dict[str, object]:
    return {"name": s.name, "url": s.base_url, "model": s.model, "logprobs": s.logprobs.value}


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / RESULTS).is_file())):
        raise _fail(f"--out {out} exists and is not an eval report directory; choose another --out")
    if not out.parent.exists():
        raise _fail(f"the parent of --out ({out.parent}) does not exist")


def _write(
    out: Path,
    name: str,
    n_items: int,
    results: list[EndpointResult],
    summaries: list[Summary],
    comparisons: list[Comparison],
    gate: str | None,
    meta: dict[str, object],
) -> None:
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        from inferline.eval.plot import write_plot  # matplotlib: only when a report is written, not at every CLI start

        write_plot(summaries, comparisons, tmp / PLOT, name)
        (tmp / REPORT).write_text(render_markdown(name, n_items, summaries, comparisons, gate, PLOT, meta))
        (tmp / RESULTS).write_bytes(
            orjson.dumps(results_json(meta, results, summaries, comparisons), option=orjson.OPT_INDENT_2)
        )
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
