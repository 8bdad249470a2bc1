"""`inferline advise` end to end on small inputs, --help, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from inferline.advise.cli import app
from inferline.advise.prices import EXAMPLE_PRICES
from inferline.cli import app as root

# the CPU profile for both the "GPU" replica and the edge device keeps the capacity searches to seconds
SMALL = ["--requests-per-day", "2000", "--peak-rps", "0.2", "--prompt-tokens", "80", "--output-tokens", "32",
         "--ttft-slo", "1500", "--profile", "cpu-smollm2", "--no-cache"]  # fmt: skip


def test_every_option_has_help() -> None:
    command = get_command(app)
    assert all(getattr(p, "help", None) for p in command.params), [p.name for p in command.params]
    result = CliRunner().invoke(root, ["advise", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for p in command.params:
        assert p.opts[0] in result.output, p.opts[0]


def test_offline_workload_recommends_the_edge_and_writes_json_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "advice.json"
    png = tmp_path / "cost.png"
    args = ["advise", *SMALL, "--offline", "--compliance", "--json", str(out), "--plot", str(png), "--check-claims"]
    result = CliRunner().invoke(root, args)
    assert result.exit_code == 0, result.output
    assert "recommendation: Edge" in result.output and "seed note's cost claims" in result.output
    data = orjson.loads(out.read_bytes())
    assert data["recommendation"] == "edge-llamacpp" and data["prices_as_of"] == "2025-06-30"
    assert {o["option"] for o in data["options"]} == {
        "dedicated-vllm", "vllm-proxy", "serverless", "managed-api", "edge-llamacpp",
    }  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE_PRICES.read_text())
    del data["managed_api"]["chat"]["max_rps"]
    prices = tmp_path / "prices.yaml"
    prices.write_text(yaml.safe_dump(data))
    cases = [
        (["--requests-per-day", "100", "--prices", str(prices)], "managed_api.chat.max_rps: required"),
        (["--peak-rps", "3"], "requests_per_day: required"),
        (["--requests-per-day", "86400", "--peak-rps", "0.1"], "below the daily mean"),
        (["--requests-per-day", "100", "--profile", "tpu-nope"], "unknown profile"),
        (["--requests-per-day", "100", "--profile-from", str(tmp_path / "none.json")], "no such file"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(root, ["advise", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
