"""`inferline bench`: the typer sub-app (mounted by the root CLI as `bench`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from inferline.bench.config import (
    DEFAULT_INPUT_LEN,
    DEFAULT_NUM_REQUESTS,
    DEFAULT_OUTPUT_LEN,
    DEFAULT_URL,
    BenchConfig,
    Endpoint,
    LengthDist,
    LengthSpec,
    Workload,
    parse_list,
)
from inferline.bench.metrics import parse_slo
from inferline.bench.runner import BenchError, BenchResult, Progress, run_bench

T = TypeVar("T")

app = typer.Typer(
    name="bench",
    help=(
        "Load-test any OpenAI-compatible streaming endpoint: open loop (--rate) or closed loop "
        "(--concurrency); TTFT, TPOT, ITL, E2E, throughput and goodput as vLLM defines them. "
        "See docs/bench.md."
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
)

_LOAD = "Load shape"
_WORK = "Workload"
_REQ = "Request"
_OUT = "Output"


@app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Option(help="Server base URL; /v1 is appended unless the URL already ends with it."),
    ] = DEFAULT_URL,
    model: Annotated[
        str | None,
        typer.Option(help="Model name to send; default: the first model listed by GET /v1/models."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Bearer token for the Authorization header; default: $INFERLINE_API_KEY or $OPENAI_API_KEY.",
            envvar=["INFERLINE_API_KEY", "OPENAI_API_KEY"],
            show_envvar=True,
        ),
    ] = None,
    endpoint: Annotated[
        Endpoint,
        typer.Option(help="chat = /v1/chat/completions (messages); completions = /v1/completions (prompt)."),
    ] = Endpoint.CHAT,
    rate: Annotated[
        str | None,
        typer.Option(
            help="Open loop: arrival rate in requests/s, 'inf' = all at once; a list (1,2,4,8) runs a sweep.",
            rich_help_panel=_LOAD,
        ),
    ] = None,
    burstiness: Annotated[
        float,
        typer.Option(
            help="Open loop: gamma shape of inter-arrival gaps; 1.0 = Poisson, <1 burstier, >1 smoother.",
            min=0.001,
            rich_help_panel=_LOAD,
        ),
    ] = 1.0,
    concurrency: Annotated[
        str | None,
        typer.Option(
            help=(
                "Closed loop: number of users, each sending its next request when the last one ends; "
                "a list (1,4,16) runs a sweep. With --rate: a cap on requests in flight."
            ),
            rich_help_panel=_LOAD,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            help="Seconds during which new requests start, per run (then --grace for stragglers).",
            min=0.001,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    num_requests: Annotated[
        int | None,
        typer.Option(
            help=f"Requests per run (whichever of this and --duration comes first); default "
            f"{DEFAULT_NUM_REQUESTS} when --duration is not given.",
            min=1,
            rich_help_panel=_LOAD,
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            help="After --duration, seconds to let in-flight requests finish before cancelling "
            "(and counting) them: the run's hard deadline is duration + grace.",
            min=0,
            rich_help_panel=_LOAD,
        ),
    ] = 30.0,
    request_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds one request may take in all; later it counts as 'timeout'.",
            min=0.001,
            rich_help_panel=_REQ,
        ),
    ] = 300.0,
    connect_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds to open a connection; later it counts as 'timeout'.",
            min=0.001,
            rich_help_panel=_REQ,
        ),
    ] = 10.0,
    warmup: Annotated[
        int,
        typer.Option(help="Requests sent (and not recorded) before measuring.", min=0, rich_help_panel=_LOAD),
    ] = 0,
    workload: Annotated[
        Workload,
        typer.Option(
            help="random = synthetic lengths; prefix = groups sharing a system prompt; mix = short/long; "
            "sharegpt = --dataset (implied by --dataset).",
            rich_help_panel=_WORK,
        ),
    ] = Workload.RANDOM,
    input_len: Annotated[
        int,
        typer.Option(
            help="Mean prompt length in tokens (random, prefix suffix, mix short).",
            min=1,
            rich_help_panel=_WORK,
        ),
    ] = DEFAULT_INPUT_LEN,
    input_dist: Annotated[
        LengthDist,
        typer.Option(help="Distribution of prompt lengths around --input-len.", rich_help_panel=_WORK),
    ] = LengthDist.FIXED,
    input_spread: Annotated[
        float,
        typer.Option(
            help="Width of --input-dist as a fraction of the mean: uniform +-spread, normal sd, lognormal CV.",
            min=0,
            rich_help_panel=_WORK,
        ),
    ] = 0.5,
    output_len: Annotated[
        int | None,
        typer.Option(
            help=f"Mean max_tokens per request (default {DEFAULT_OUTPUT_LEN}; with --dataset: each "
            "conversation's own reply length unless given).",
            min=1,
            rich_help_panel=_WORK,
        ),
    ] = None,
    output_dist: Annotated[
        LengthDist,
        typer.Option(help="Distribution of max_tokens around --output-len.", rich_help_panel=_WORK),
    ] = LengthDist.FIXED,
    output_spread: Annotated[
        float,
        typer.Option(help="Width of --output-dist, as --input-spread.", min=0, rich_help_panel=_WORK),
    ] = 0.5,
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="ShareGPT-format JSON file; keeps prompts of 4-1024 tokens with prompt + output <= 2048.",
            exists=True,
            dir_okay=False,
            rich_help_panel=_WORK,
        ),
    ] = None,
    prefix_len: Annotated[
        int,
        typer.Option(
            help="prefix workload: tokens in each group's shared system prompt.", min=1, rich_help_panel=_WORK
        ),
    ] = 512,
    groups: Annotated[
        int,
        typer.Option(help="prefix workload: number of distinct shared prompts.", min=1, rich_help_panel=_WORK),
    ] = 8,
    short_frac: Annotated[
        float,
        typer.Option(help="mix workload: fraction of short requests.", min=0, max=1, rich_help_panel=_WORK),
    ] = 0.8,
    long_input_len: Annotated[
        int,
        typer.Option(help="mix workload: mean prompt tokens of a long request.", min=1, rich_help_panel=_WORK),
    ] = 2048,
    long_output_len: Annotated[
        int,
        typer.Option(help="mix workload: mean max_tokens of a long request.", min=1, rich_help_panel=_WORK),
    ] = 256,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Count prompt tokens with this tokenizer (tokenizer.json via `tokenizers`, or a name "
            "via `transformers`); default: estimate (~4 ASCII chars a token).",
            rich_help_panel=_WORK,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for prompts, lengths and arrival times.", rich_help_panel=_WORK)] = 0,
    ignore_eos: Annotated[
        bool,
        typer.Option(
            "--ignore-eos",
            help="Send ignore_eos=true (vLLM, llama.cpp) so each request generates exactly max_tokens.",
            rich_help_panel=_REQ,
        ),
    ] = False,
    usage: Annotated[
        bool,
        typer.Option(
            help="Ask for stream_options.include_usage and count output tokens from it (--no-usage for "
            "servers that reject the field: tokens are then counted as content chunks).",
            rich_help_panel=_REQ,
        ),
    ] = True,
    extra_body: Annotated[
        str | None,
        typer.Option(
            help="JSON object merged into every request body, e.g. '{\"temperature\": 0}'.",
            rich_help_panel=_REQ,
        ),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option(
            help="SLOs for goodput, e.g. ttft=800ms,tpot=50ms,e2e=10s (units us, ms, s; a bare number is ms).",
            rich_help_panel=_OUT,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write results JSON here (config, machine, versions, date, per-run summaries).",
            dir_okay=False,
            rich_help_panel=_OUT,
        ),
    ] = None,
    plots: Annotated[
        Path | None,
        typer.Option(
            help="Write PNG plots into this directory (latency CDFs, over-time; sweep curves).",
            file_okay=False,
            rich_help_panel=_OUT,
        ),
    ] = None,
    save_requests: Annotated[
        bool,
        typer.Option("--save-requests", help="Also write every request's timeline to the JSON.", rich_help_panel=_OUT),
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a live progress bar.", rich_help_panel=_OUT)] = True,
) -> None:
    """Benchmark an OpenAI-compatible endpoint: `inferline bench --url URL --rate 5 --duration 30`."""
    if ctx.invoked_subcommand is not None:
        return
    console = Console()
    try:
        cfg = BenchConfig(
            url=url,
            model=model,
            api_key=SecretStr(api_key) if api_key else None,
            endpoint=endpoint,
            rates=parse_list(rate, float, "rate") if rate else (),
            burstiness=burstiness,
            concurrency=parse_list(concurrency, int, "concurrency") if concurrency else (),
            duration_s=duration,
            num_requests=num_requests,
            grace_s=grace,
            request_timeout_s=request_timeout,
            connect_timeout_s=connect_timeout,
            warmup_requests=warmup,
            workload=Workload.SHAREGPT if dataset is not None else workload,
            input=LengthSpec(mean=input_len, dist=input_dist, spread=input_spread),
            output=None if output_len is None else LengthSpec(mean=output_len, dist=output_dist, spread=output_spread),
            dataset=dataset,
            prefix_len=prefix_len,
            groups=groups,
            short_frac=short_frac,
            long_input_len=long_input_len,
            long_output_len=long_output_len,
            tokenizer=tokenizer,
            seed=seed,
            ignore_eos=ignore_eos,
            include_usage=usage,
            extra_body=_json_object(extra_body),
            slo=parse_slo(slo) if slo else None,
            save_requests=save_requests,
        )
    except (ValueError, ValidationError) as exc:
        _fail(console, _validation_message(exc), 2)
    if output_len is None and output_dist is not LengthDist.FIXED:
        console.print("[yellow]warning:[/] --output-dist has no effect without --output-len")
    result = execute(cfg, console, show_progress=progress)
    from inferline.bench.report import print_report, write_json

    print_report(result, console)
    if out is not None:
        write_json(result, out)
        console.print(f"results: {out}")
    if plots is not None:
        from inferline.bench.plots import write_plots

        for p in write_plots(result, plots):
            console.print(f"plot: {p}")
    if not any(r.summary["completed"] for r in result.runs):
        _fail(console, "no request completed", 1)


def execute(cfg: BenchConfig, console: Console, *, show_progress: bool = True) -> BenchResult:
    """Run the benchmark on a fresh event loop (uvloop when installed); Ctrl-C stops it, keeping results."""

    async def main() -> BenchResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_sigint() -> None:
            console.print("[yellow]stopping: cancelling in-flight requests (Ctrl-C again to abort)[/]")
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        with _ProgressView(console, enabled=show_progress) as view:
            return await run_bench(cfg, on_progress=view.update, stop=stop)

    _raise_open_files_limit()
    try:
        return run_async(main())
    except BenchError as exc:
        _fail(console, str(exc), 1)


def _raise_open_files_limit() -> None:
    """One socket a request in flight: lift the soft open-files limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))
    except (ImportError, ValueError, OSError):
        pass


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when it is installed (lower per-chunk overhead), else the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


class _ProgressView:
    """A rich progress bar per run: by requests when --num-requests bounds it, else by time."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
            disable=not enabled,
        )
        self.tasks: dict[int, TaskID] = {}

    def __enter__(self) -> _ProgressView:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def update(self, p: Progress) -> None:
        if not self.enabled:
            return
        if p.total_requests is None and p.duration_s is not None:
            total = p.duration_s
            done = min(p.elapsed_s, total)
        else:
            total = float(p.total_requests or 0)
            done = float(p.completed + p.failed)
        if p.phase == "done":
            done = total
        task = self.tasks.get(p.run_index)
        run = f"[{p.run_index + 1}/{p.runs}] " if p.runs > 1 else ""
        desc = f"{run}{p.label}" + (" (draining)" if p.phase == "draining" else "")
        counts = f"ok {p.completed}  err {p.failed}  in flight {p.in_flight}"
        if task is None:
            task = self.tasks[p.run_index] = self.bar.add_task(desc, total=total, counts=counts)
        self.bar.update(task, description=desc, total=total, completed=done, counts=counts)


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"--extra-body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--extra-body must be a JSON object")
    return value


def _validation_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            (f"{'.'.join(str(x) for x in e['loc'])}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
    return str(exc)


def _fail(console: Console, message: str, code: int) -> NoReturn:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


@app.command("selftest")
def selftest(
    concurrency: Annotated[int, typer.Option(help="Closed-loop users in the bundled mode.", min=1)] = 64,
    paced_concurrency: Annotated[int, typer.Option(help="Closed-loop users in the paced mode.", min=1)] = 256,
    duration: Annotated[float, typer.Option(help="Seconds per measurement.", min=0.5)] = 5.0,
    tokens: Annotated[str, typer.Option(help="Content chunks per response; a list measures each.")] = "16,256",
    rate: Annotated[
        float, typer.Option(help="Also hold this open-loop rate (paced, first chunk count); 0 = skip.", min=0)
    ] = 1000.0,
    out: Annotated[Path | None, typer.Option(help="Write the measurements as JSON here.", dir_okay=False)] = None,
) -> None:
    """Measure the generator's own capacity: req/s and chunks/s it drives against a trivially fast server.

    The fake SSE server runs in a separate process (its own core). Per chunk count, two modes:
    'bundled' (a whole response in one write: per-request cost) and 'paced' (one chunk per stream
    per 1 ms tick, so every chunk is its own network read, as with a real engine).
    """
    from inferline.bench.selftest import measure_capacity, print_capacity

    console = Console()
    counts = [int(x) for x in parse_list(tokens, int, "tokens")]
    rows = run_async(
        measure_capacity(
            concurrency=concurrency,
            paced_concurrency=paced_concurrency,
            duration_s=duration,
            tokens=counts,
            open_rate=rate or None,
        )
    )
    print_capacity(rows, console)
    if out is not None:
        out.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
        console.print(f"results: {out}")


@app.command("report")
def report(
    results: Annotated[Path, typer.Argument(help="A results JSON written by --out.", exists=True, dir_okay=False)],
    plots: Annotated[
        Path | None,
        typer.Option(help="Write the PNG plots here (needs a file written with --save-requests).", file_okay=False),
    ] = None,
) -> None:
    """Print the summary tables of a saved results file again, and redraw its plots."""
    from inferline.bench.report import load_json, print_report

    console = Console()
    try:
        result = load_json(results)
    except (ValueError, KeyError, TypeError) as exc:
        _fail(console, f"{results}: not a bench results file ({exc!r})", 2)
    print_report(result, console)
    if plots is not None:
        if not any(r.records for r in result.runs):
            _fail(console, f"{results} has no per-request timelines: rerun with --save-requests to plot", 2)
        from inferline.bench.plots import write_plots

        for p in write_plots(result, plots):
            console.print(f"plot: {p}")


@app.command("fake-server")
def fake_server(
    port: Annotated[int, typer.Option(help="Port to bind (0 = any free port).")] = 8099,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    ttft: Annotated[float, typer.Option(help="Seconds before the first content chunk.", min=0)] = 0.0,
    itl: Annotated[float, typer.Option(help="Seconds between content chunks.", min=0)] = 0.0,
    tick: Annotated[
        float | None, typer.Option(help="Pace all streams with one shared ticker of this many seconds.")
    ] = None,
) -> None:
    """Serve a trivially fast OpenAI-style streaming endpoint (answers max_tokens chunks of 'tok ')."""
    from inferline.bench.fakeserver import main as serve

    argv = ["--port", str(port), "--host", host, "--ttft", str(ttft), "--itl", str(itl)]
    if tick is not None:
        argv += ["--tick", str(tick)]
    serve(argv)
