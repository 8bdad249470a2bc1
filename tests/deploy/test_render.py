"""`inferline deploy render`: one source for gateway and engines; every undeployable config named by its field."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from inferline.cli import app

from .chart import CHART, ROOT, SOURCES

INFERLINE = str(Path(sys.executable).parent / "inferline")

BASE: dict[str, Any] = {
    "models": [
        {
            "name": "llama-8b",
            "backends": [
                {
                    "name": "local",
                    "kind": "vllm",
                    "url": "http://127.0.0.1:8000",
                    "upstream_model": "meta-llama/Llama-3.1-8B-Instruct",
                    "max_num_seqs": 128,
                    "scheduling_priority": True,
                }
            ],
        }
    ],
    "deploy": {"models": {"llama-8b": {"image": "vllm/vllm-openai:v0.33.0", "gpus": 2}}},
}


@dataclass
class _Result:
    returncode: int
    stdout: str
    stderr: str


def _render(tmp_path: Path, config: dict[str, Any], *extra: str) -> _Result:
    """The CLI in-process (typer's runner: same code path, no interpreter start per case)."""
    path = tmp_path / "inferline.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["deploy", "render", "--config", str(path), "--out", str(tmp_path / "out"), *extra]
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _Result(result.exit_code, result.stdout, result.stderr)


def _values(tmp_path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((tmp_path / "out" / "values.yaml").read_text())
    return loaded


def test_engine_limits_come_from_the_backend_written_once(tmp_path: Path) -> None:
    proc = _render(tmp_path, BASE)
    assert proc.returncode == 0, proc.stderr
    v = _values(tmp_path)
    (e,) = v["engines"]
    assert e["maxNumSeqs"] == 128 and e["schedulingPolicy"] == "priority"
    assert e["weights"] == e["servedModelName"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert e["gpus"] == e["tensorParallelSize"] == 2
    assert e["image"] == {"repository": "vllm/vllm-openai", "tag": "v0.33.0", "pullPolicy": "IfNotPresent"}
    # the laptop's engine stays out of the cluster config; the chart writes the discovery instead
    assert v["gateway"]["config"]["models"] == [{"name": "llama-8b", "backends": []}]
    assert "deploy" not in v["gateway"]["config"]
    assert "local" in proc.stderr  # the note says so


def test_values_override_merges_engines_by_name(tmp_path: Path) -> None:
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump({"engines": [{"name": "llama-8b", "gpus": 4}], "redis": {"mode": "none"}}))
    proc = _render(tmp_path, BASE, "--values", str(over))
    assert proc.returncode == 0, proc.stderr
    v = _values(tmp_path)
    assert v["engines"][0]["gpus"] == 4 and v["engines"][0]["maxNumSeqs"] == 128
    assert v["redis"]["mode"] == "none"


def _broken(path: list[str | int], value: Any, delete: bool = False) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    node: Any = cfg
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


M = ["deploy", "models", "llama-8b"]
A = [*M, "autoscaling"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_broken([*M, "image"], None, delete=True), "deploy.models.llama-8b.image: Field required"),
        (_broken([*M, "gpus"], None, delete=True), "deploy.models.llama-8b.gpus: Field required"),
        (_broken([*M, "image"], "vllm/vllm-openai:latest"), "deploy.models.llama-8b.image"),
        (_broken([*M, "image"], "vllm/vllm-openai"), "has no tag"),
        (_broken([*A], {"gpu_utilization_target": 150}), "gpu_utilization_target must be in (0, 100]"),
        (_broken([*A], {"kv_cache_usage_target": 1.5}), "kv_cache_usage_target is a ratio in (0, 1]"),
        (_broken([*A], {"min_replicas": 5, "max_replicas": 3}), "min_replicas (5) is above max_replicas (3)"),
        (_broken([*A], {"gpu_utilization_scale_down": 80}), "gpu_utilization_scale_down must be in (0"),
        (
            _broken(["models", 0, "discovery"], {"dns_name": "llama_8b.inference.svc"}),
            "models.0.discovery.dns_name",
        ),
        (
            _broken(["models", 0, "discovery"], {"dns_name": "other-engine.inference.svc.cluster.local"}),
            "models[0].discovery.dns_name`: 'other-engine.inference.svc.cluster.local' never resolves",
        ),
        (_broken(["deploy", "models", "llama-70b"], {"image": "vllm/vllm-openai:v0.33.0", "gpus": 1}), "llama-70b"),
        (_broken([*M, "tensor_parallel_size"], 3), "tensor_parallel_size (3) must divide gpus (2)"),
        (
            _broken(["limits"], {"keys": [{"name": "app", "key_env": "APP_KEY"}]}),
            "deploy.gateway.api_keys_secret",
        ),
        (_broken(["deploy"], None, delete=True), "`deploy`: missing"),
    ],
)
def test_undeployable_config_fails_naming_the_field(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    proc = _render(tmp_path, config)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")


@pytest.mark.parametrize("source", sorted(SOURCES.glob("*.inferline.yaml")), ids=lambda p: p.name)
def test_chart_examples_are_rendered_from_their_source(source: Path, tmp_path: Path) -> None:
    """deploy/helm/inferline/examples/*.yaml are outputs of `make deploy-examples`, never edited by hand."""
    name = source.name.removesuffix(".inferline.yaml")
    proc = subprocess.run(
        [INFERLINE, "deploy", "render", "--config", str(source.relative_to(ROOT)), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "values.yaml").read_text() == (CHART / "examples" / f"{name}.yaml").read_text(), (
        "run: make deploy-examples"
    )
    # and the gateway itself accepts the same file (it ignores `deploy:`)
    check = subprocess.run([INFERLINE, "config", "check", str(source)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_values_schema_is_generated_from_the_code() -> None:
    proc = subprocess.run([INFERLINE, "deploy", "schema"], capture_output=True, text=True, timeout=60)
    assert proc.stdout == (CHART / "values.schema.json").read_text(), "run: make deploy-examples"


def test_render_help_documents_every_option() -> None:
    proc = subprocess.run([INFERLINE, "deploy", "render", "--help"], capture_output=True, text=True, timeout=60)
    for option in ("--config", "--out", "--values", "--manifests", "--release", "--namespace", "--helm", "--chart"):
        assert option in proc.stdout


def test_unreadable_inputs_and_outputs_are_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    """A directory or non-UTF-8 file as --config, a file as --out, a helm that is not there: `error: ...`, exit 1."""
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    taken = tmp_path / "taken"
    taken.write_text("")
    cases = [
        (["--config", str(tmp_path), "--out", str(tmp_path / "a")], "is a directory"),
        (["--config", str(binary), "--out", str(tmp_path / "b")], "not UTF-8"),
    ]
    source = tmp_path / "inferline.yaml"
    source.write_text(yaml.safe_dump(BASE))
    cases += [
        (["--config", str(source), "--out", str(taken)], "is a file; give a directory"),
        (["--config", str(source), "--out", str(tmp_path / "c"), "--manifests", "--helm", "/no/helm"], "--helm"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["deploy", "render", *args])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (args, result.exception)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "c").exists(), "a failed --manifests must not leave values.yaml behind"
