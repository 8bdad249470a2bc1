"""`inferline autoscale simulate` end to end on small inputs, its --help, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.main import get_command
from typer.testing import CliRunner

from inferline.autoscale.cli import app
from inferline.cli import app as root

SMALL = [
    "--traffic",
    "step:base=4,peak=30,at=60",
    "--duration",
    "240",
    "--output-tokens",
    "128",
    "--max-num-seqs",
    "16",
    "-q",
]


def test_every_option_has_help_and_is_listed() -> None:
    command = get_command(app)
    simulate = command.commands["simulate"]  # type: ignore[attr-defined]
    assert all(getattr(p, "help", None) for p in simulate.params), [p.name for p in simulate.params]
    result = CliRunner().invoke(root, ["autoscale", "simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for p in simulate.params:
        assert p.opts[0] in result.output, p.opts[0]


def test_compare_writes_results_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["autoscale", "simulate", *SMALL, "--compare", "static:1,running", "--out", str(out)]
    result = CliRunner().invoke(root, args)
    assert result.exit_code == 0, result.output
    assert "best first" in result.output and "static:1" in result.output
    data = orjson.loads((out / "results.json").read_bytes())
    assert data["schema"] == "inferline.autoscale/1" and data["kubernetes"] == "v1.34"
    names = [r["summary"]["name"] for r in data["runs"]]
    assert sorted(names) == ["running", "static:1"] and sorted(data["ranking"]) == sorted(names)
    running = next(r for r in data["runs"] if r["summary"]["name"] == "running")
    assert running["summary"]["scale_ups"] >= 1 and running["decisions"]
    for png in ("static_1.png", "running.png", "compare.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hpa_manifest_and_a_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(f"{i * 0.1:.1f},200,32\n" for i in range(600)))
    hpa = tmp_path / "hpa.yaml"
    hpa.write_text(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec:\n  minReplicas: 1\n  maxReplicas: 3\n"
        "  metrics:\n  - type: External\n    external:\n      metric: {name: inferline_queue_depth}\n"
        "      target: {type: AverageValue, averageValue: '2'}\n"
    )
    result = CliRunner().invoke(root, ["autoscale", "simulate", "--traffic", str(trace), "--hpa", str(hpa)])
    assert result.exit_code == 0, result.output
    assert "600 requests" in result.output and "GPU-hours" in result.output


def test_bad_input_is_one_line_with_a_nonzero_exit(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("arrival_s,prompt_tokens,output_tokens\n")
    bad = tmp_path / "values.yaml"
    bad.write_text("autoscaling:\n  minReplicas: 12\n  maxReplicas: 10\n  targetGPUUtilization: 75\n")
    chart_values = tmp_path / "chart-values.yaml"  # what `inferline deploy render` writes: per-engine values
    chart_values.write_text("engines:\n  - name: llama\n    autoscaling: {mode: hpa, minReplicas: 2}\n")
    cases = [
        (["--traffic", str(empty)], "has no requests"),
        (["--hpa", str(bad)], "autoscaling.minReplicas (12) is above autoscaling.maxReplicas (10)"),
        (["--hpa", str(tmp_path / "missing.yaml")], "no such file"),
        (["--preset", "fastest"], "neither a preset"),
        (["--load-time", "soon"], "--load-time"),
        (["--traffic", "step:base=1"], "missing peak="),
        (["--traffic", "bogus:rate=1"], "unknown traffic shape 'bogus'"),
        (["--hpa", str(tmp_path)], "is a directory"),
        (["--hpa", str(chart_values)], "the Helm chart's values"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(root, ["autoscale", "simulate", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
        assert "Traceback" not in result.output


def test_render_prints_a_manifest_that_loads_back_the_same(tmp_path: Path) -> None:
    from inferline.autoscale.configs import load_autoscaler

    for name in ("seed", "keda-queue"):
        result = CliRunner().invoke(root, ["autoscale", "render", name])
        assert result.exit_code == 0, result.output
        f = tmp_path / f"{name}.yaml"
        f.write_text(result.output)
        again, original = load_autoscaler(str(f)), load_autoscaler(name)
        assert again.effective_hpa.metrics == original.effective_hpa.metrics
        assert again.effective_hpa.behavior == original.effective_hpa.behavior
        assert (again.min_replicas, again.max_replicas) == (original.min_replicas, original.max_replicas)
