"""`inferline bench` as a typer sub-app: mounted under a root app, it runs, writes JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from inferline.bench.cli import app
from inferline.bench.fakeserver import FakeServer, Reply, ThreadedFakeServer

runner = CliRunner()


def root() -> typer.Typer:
    r = typer.Typer()

    @r.command()
    def other() -> None:  # a second command so that `bench` is a real subcommand
        """Unrelated."""

    r.add_typer(app, name="bench")
    return r


def test_every_option_has_help() -> None:
    group: Any = typer.main.get_command(root())  # typer vendors its own click: duck-type it
    bench = group.commands["bench"]
    commands = [bench, *bench.commands.values()]
    options = 0
    for cmd in commands:
        for param in cmd.params:
            if param.param_type_name == "option" and param.name != "help":
                options += 1
                assert param.help, f"{cmd.name} {param.opts} has no help text"
    assert options > 40
    assert set(bench.commands) == {"selftest", "fake-server", "report"}


def test_run_writes_json_and_plots(tmp_path: Path, threaded_server: FakeServer) -> None:
    out, plots = tmp_path / "r.json", tmp_path / "plots"
    args = ["bench", "--url", threaded_server.url, "--rate", "100", "--num-requests", "30"]
    args += ["--input-len", "16", "--output-len", "8", "--slo", "ttft=1s,tpot=100ms", "--no-progress"]
    args += ["--out", str(out), "--plots", str(plots), "--save-requests", "--api-key", "sk-test"]
    res = runner.invoke(root(), [*args, "--warmup", "3"])
    assert res.exit_code == 0, res.output
    assert threaded_server.requests == 3 + 30  # warm-up requests are sent, not recorded
    assert "TTFT" in res.output and "goodput" in res.output
    data = json.loads(out.read_text())
    for key in ("schema", "started_at", "machine", "versions", "model", "config", "runs"):
        assert key in data
    assert data["versions"]["aiohttp"] and data["machine"]["cpu_count"]
    assert "sk-test" not in out.read_text() and data["config"]["api_key_set"] is True
    s = data["runs"][0]["summary"]
    assert s["completed"] == 30 and s["goodput_rps"] > 0
    assert len(data["runs"][0]["requests"]) == 30
    assert sorted(p.name for p in plots.iterdir()) == ["latency_cdf.png", "over_time.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.iterdir())
    assert "sk-test" not in json.dumps(data["machine"]["argv"])

    again = runner.invoke(root(), ["bench", "report", str(out), "--plots", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert "goodput" in again.output
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["latency_cdf.png", "over_time.png"]


def test_sweep_plots_and_table(tmp_path: Path, threaded_server: FakeServer) -> None:
    args = ["bench", "--url", threaded_server.url, "--rate", "50,inf", "--num-requests", "10"]
    args += ["--workload", "mix", "--long-input-len", "64", "--no-progress", "--plots", str(tmp_path)]
    res = runner.invoke(root(), args)
    assert res.exit_code == 0, res.output
    assert "sweep" in res.output and "short" in res.output and "long" in res.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "sweep.png" in names and "latency_cdf.png" in names and len(names) == 4


def test_progress_bar_and_failures_exit_nonzero(tmp_path: Path) -> None:
    with ThreadedFakeServer(lambda _: Reply(status=503)) as server:
        args = ["bench", "--url", server.url, "--concurrency", "2", "--num-requests", "4"]
        res = runner.invoke(root(), [*args, "--plots", str(tmp_path), "--slo", "ttft=1s"])
    assert res.exit_code == 1
    assert "http_503: 4" in res.output and "no request completed" in res.output
    assert (tmp_path / "latency_cdf.png").exists()  # plots of a failed run draw, without warnings


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --rate"),
        (["--rate", "fast"], "not a number"),
        (["--rate", "1,2", "--concurrency", "1,2"], "not both"),
        (["--rate", "1", "--slo", "speed=1"], "SLO"),
        (["--rate", "1", "--extra-body", "[1]"], "JSON object"),
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    res = runner.invoke(root(), ["bench", "--url", "http://127.0.0.1:9", *args])
    assert res.exit_code == 2
    assert message in res.output


def test_unreachable_server_exits_1() -> None:
    res = runner.invoke(root(), ["bench", "--url", "http://127.0.0.1:9", "--rate", "1", "--no-progress"])
    assert res.exit_code == 1 and "cannot reach" in res.output


def test_mounted_in_the_inferline_cli() -> None:
    from inferline.cli import app as inferline_app

    res = runner.invoke(inferline_app, ["bench", "--help"])
    assert res.exit_code == 0 and "--concurrency" in res.output


def test_api_key_is_scrubbed_from_recorded_argv() -> None:
    from inferline.bench.report import _scrub

    argv = ["inferline", "bench", "--api-key", "sk-1", "--api-key=sk-2", "--rate", "1"]
    assert _scrub(argv) == ["inferline", "bench", "--api-key", "***", "--api-key=***", "--rate", "1"]
