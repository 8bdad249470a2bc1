"""`inferline sim` as the root CLI mounts it, and as a process that stops cleanly on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request

import typer
from typer.main import get_command
from typer.testing import CliRunner

from inferline.sim.cli import app


def test_mounted_under_a_root_cli_every_option_has_help() -> None:
    root = typer.Typer()
    root.add_typer(app, name="sim")

    @root.command()
    def other() -> None:  # a second command, so "sim" is a subcommand as in the real root CLI
        """Unrelated."""

    result = CliRunner().invoke(root, ["sim", "--help"])
    assert result.exit_code == 0, result.output
    options = "port count host profile model max-num-seqs kv-blocks scheduling-policy seed time-scale output-len"
    for option in options.split():
        assert f"--{option}" in result.output
    command = get_command(app)
    assert all(getattr(p, "help", None) for p in command.params), [p.name for p in command.params]


def test_bad_options_are_refused_before_binding() -> None:
    root = typer.Typer()
    root.add_typer(app, name="sim")
    root.command()(lambda: None)
    result = CliRunner().invoke(root, ["sim", "--profile", "a100-nope"])
    assert result.exit_code == 2 and "unknown profile" in result.output
    result = CliRunner().invoke(root, ["sim", "--output-len", "exp:zero"])
    assert result.exit_code == 2


def test_process_serves_then_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferline.sim", "--port", "0", "--count", "3", "--profile", "instant"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        urls = [re.search(r"(http://\S+)/v1", line).group(1) for line in lines]  # type: ignore[union-attr]
        assert len(set(urls)) == 3 and all("SIMULATED" in line for line in lines)
        for url in urls:
            with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped 3 engine(s)" in out
