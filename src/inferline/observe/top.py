"""`inferline top`: a live terminal view of a running gateway, per model and backend, hottest engine first."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from inferline.observe.rules import FRAGMENTATION_ALERT_RATIO, KV_USAGE_ALERT_RATIO, TTFT_P95_SLO_S
from inferline.observe.topdata import BackendRow, CanaryView, Frame, NotInferline, ScrapeHistory, parse_scrape

__all__ = ["app", "render"]

app = typer.Typer(
    help="Live view of a running inferline gateway: per model and backend, hottest engine first. q or Ctrl-C quits.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ScrapeError(Exception):
    """The gateway's /metrics could not be read; the message is one line for the operator."""


def scrape_text(client: httpx.Client, url: str) -> str:
    target = url.rstrip("/") + "/metrics"
    try:
        resp = client.get(target)
    except httpx.TimeoutException:
        raise ScrapeError(f"{target}: no answer within {client.timeout.read}s") from None
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise ScrapeError(f"cannot reach {target}: {reason}") from None
    if resp.status_code != 200:
        raise ScrapeError(f"{target} answered HTTP {resp.status_code}")
    return resp.text


def take(client: httpx.Client, url: str, history: ScrapeHistory) -> None:
    text = scrape_text(client, url)
    try:
        history.add(parse_scrape(text, time.monotonic()))
    except NotInferline:
        raise ScrapeError(
            f"{url.rstrip('/')}/metrics has no inferline_* series: is it an inferline gateway (inferline serve)?"
        ) from None
    except ValueError as exc:
        raise ScrapeError(f"{url.rstrip('/')}/metrics: {exc}") from None


def _pct(x: float | None, alert: float, warn: float | None = None) -> Text:
    if x is None:
        return Text("–", style="dim")
    style = "bold red" if x > alert else ("yellow" if warn is not None and x > warn else "green")
    return Text(f"{100 * x:.0f}%", style=style)


def _secs(x: float | None, alert: float | None = None) -> Text:
    if x is None:
        return Text("–", style="dim")
    text = f"{1000 * x:.0f} ms" if x < 10 else f"{x:.1f} s"
    return Text(text, style="bold red" if alert is not None and x > alert else "")


def _num(x: float | None, fmt: str = "{:.0f}", alert: float | None = None) -> Text:
    if x is None:
        return Text("–", style="dim")
    return Text(fmt.format(x), style="bold red" if alert is not None and x > alert else "")


def _ready(b: BackendRow) -> Text:
    if b.ready is None:
        return Text("?", style="dim")
    return Text("yes", style="green") if b.ready else Text("DOWN", style="bold red")


def _canary_cells(c: CanaryView) -> tuple[Text, Text]:
    """The canary line under its model: the candidate, and the share it was given vs the share it served."""
    name = Text(f"  canary {c.candidate}", style="magenta")
    if c.rolled_back:
        return name, Text("ROLLED BACK (weight 0)", style="bold red")
    weight = "?" if c.weight is None else f"{c.weight:.0%}"
    served = "" if c.served_share is None else f", served {c.served_share:.0%}"
    return name, Text(f"weight {weight}{served}", style="magenta")


def render(frame: Frame, url: str, status: str | None = None) -> Group:
    """One frame: a header line, the table, and at most two status lines (missing metrics, last error)."""
    hottest = frame.hottest
    head = Text.assemble(
        ("inferline top ", "bold"),
        (url, "cyan"),
        f"  {datetime.now():%H:%M:%S}  ",
        (f"rates over {frame.rate_window_s:.0f} s, TTFT over {frame.quantile_window_s:.0f} s", "dim"),
        ("  (q quits)", "dim"),
    )
    table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    for col, justify in (
        ("model / backend", "left"),
        ("ready", "left"),
        ("run", "right"),
        ("wait", "right"),
        ("ours", "right"),
        ("KV", "right"),
        ("frag", "right"),
        ("TTFT p50", "right"),
        ("TTFT p95", "right"),
        ("tok/s", "right"),
        ("errors", "right"),
        ("queue", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in frame.models:
        ready = "–" if m.ready_backends is None else f"{m.ready_backends:.0f} ready"
        rps = "" if m.requests_per_s is None else f"{m.requests_per_s:.1f} req/s"
        rejected = "" if not m.rejected else f"{m.rejected:.0f} x 429"
        table.add_row(
            Text(m.model, style="bold magenta"),
            Text(ready, style="bold red" if m.ready_backends == 0 else ""),
            Text(rps, style="dim"),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            Text(rejected, style="yellow"),
            _num(m.queue, alert=0),
        )
        if m.canary is not None:
            table.add_row(*_canary_cells(m.canary), *[""] * 10)
        for b in m.backends:
            hot = b is hottest
            name = Text(("▶ " if hot else "  ") + b.backend, style="bold red" if hot else "")
            table.add_row(
                name,
                _ready(b),
                _num(b.running),
                _num(b.waiting, alert=0),
                _num(b.in_flight),
                _pct(b.kv, KV_USAGE_ALERT_RATIO, 0.7),
                _pct(b.fragmentation, FRAGMENTATION_ALERT_RATIO, 0.1),
                _secs(b.ttft_p50),
                _secs(b.ttft_p95, TTFT_P95_SLO_S),
                _num(b.tokens_per_s),
                _num(b.errors, alert=0),
                "",
            )
    parts: list[Text | Table] = [head, table]
    if not frame.models:
        parts.append(Text("no models in the gateway's metrics yet", style="dim"))
    if frame.missing:
        parts.append(Text("missing metrics (shown as –): " + ", ".join(frame.missing), style="yellow"))
    if status:
        parts.append(Text(status, style="bold red"))
    return Group(*parts)


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """Single-key input on a terminal (cbreak mode, restored on exit); yields whether keys can be read."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _CtrlC:
    """Ctrl-C as a request to quit, checked between refreshes, not a KeyboardInterrupt raised wherever the
    main thread is: raised inside rich's or httpx's locks it can leave one held, and the exit then hangs
    (seen once under heavy load). The signal's wakeup fd ends the wait at once."""

    def __init__(self) -> None:
        self.pressed = False
        self.fd = -1

    def __enter__(self) -> _CtrlC:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self.fd, self._w = r, w
        self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        self._old_wakeup = signal.set_wakeup_fd(w)
        return self

    def _on_sigint(self, _signum: int, _frame: object) -> None:
        self.pressed = True

    def __exit__(self, *_exc: object) -> None:
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGINT, self._old_handler)
        os.close(self.fd)
        os.close(self._w)


def _wait_for_q(seconds: float, keys: bool, ctrl_c: _CtrlC) -> bool:
    """Sleep SECONDS, or less if q or Ctrl-C is pressed; True when one was."""
    end = time.monotonic() + seconds
    watch = [sys.stdin, ctrl_c.fd] if keys else [ctrl_c.fd]
    while not ctrl_c.pressed and (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select(watch, [], [], left)
        if sys.stdin in ready and os.read(sys.stdin.fileno(), 1).lower() == b"q":
            return True
    return ctrl_c.pressed


@app.callback(invoke_without_command=True)
def top(
    url: Annotated[
        str, typer.Option(help="Base URL of the gateway (any inferline serve).", envvar="INFERLINE_URL")
    ] = "http://127.0.0.1:8080",
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.1)] = 1.0,
    rate_window: Annotated[float, typer.Option(help="Seconds over which tok/s and errors are computed.", min=1)] = 10.0,
    ttft_window: Annotated[float, typer.Option(help="Seconds over which TTFT p50/p95 are computed.", min=1)] = 60.0,
    once: Annotated[
        bool,
        typer.Option("--once", help="Scrape twice, INTERVAL apart, print one frame and exit (for scripts and tests)."),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for /metrics.", min=0.1)] = 2.0,
) -> None:
    """Per model and backend: ready, running/waiting, KV use, fragmentation, TTFT p50/p95, tok/s, errors, queue.

    The hottest engine (KV use plus its own queue) is listed first and marked ▶. Values over an alert
    threshold are red: KV > 85%, fragmentation > 20%, TTFT p95 > 800 ms.
    """
    history = ScrapeHistory(rate_window_s=rate_window, quantile_window_s=ttft_window)
    console = Console() if sys.stdout.isatty() else Console(width=150)
    with httpx.Client(timeout=timeout) as client:
        try:
            take(client, url, history)  # a wrong URL fails here, before the screen is taken over
            if once:
                time.sleep(interval)
                take(client, url, history)
                console.print(render(history.frame(), url))
                return
        except ScrapeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        status: str | None = None
        with (
            _CtrlC() as ctrl_c,
            _keys() as keys,
            Live(render(history.frame(), url), console=console, screen=False) as live,
        ):
            while not _wait_for_q(interval, keys, ctrl_c):
                try:
                    take(client, url, history)
                    status = None
                except ScrapeError as exc:  # keep the last good data on screen, say what failed
                    status = f"{datetime.now():%H:%M:%S} last scrape failed: {exc}"
                if ctrl_c.pressed:
                    break
                live.update(render(history.frame(), url, status))
