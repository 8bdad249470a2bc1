"""`inferline quantize`: what is refused before any work (no quant venv needed): one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from inferline.quantize.schemes import SCHEMES, policy_refusal
from support import INFERLINE


def quantize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERLINE, "quantize", *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """Looks like a HF model dir (config + weights file); the checks before any work accept it."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"hidden_size": 576, "intermediate_size": 1536}))
    (d / "model.safetensors").write_bytes(b"\0" * 16)
    return d


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_missing_model_dir(tmp_path: Path) -> None:
    line = _one_error_line(
        quantize("--model", str(tmp_path / "nope"), "--scheme", "w4a16", "--out", str(tmp_path / "o"))
    )
    assert line == f"error: model directory {tmp_path / 'nope'} does not exist"
    assert not (tmp_path / "o").exists()


def test_unknown_scheme_lists_the_known_ones(model_dir: Path, tmp_path: Path) -> None:
    line = _one_error_line(quantize("--model", str(model_dir), "--scheme", "int3", "--out", str(tmp_path / "o")))
    assert "unknown scheme 'int3'; known: " in line and all(s in line for s in SCHEMES)


def test_not_a_model_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    line = _one_error_line(
        quantize("--model", str(tmp_path / "empty"), "--scheme", "gguf-q8_0", "--out", str(tmp_path / "o"))
    )
    assert "has no config.json" in line


def test_existing_output_needs_force(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = _one_error_line(quantize("--model", str(model_dir), "--scheme", "gguf-q8_0", "--out", str(out)))
    assert "already exists; pass --force" in line
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("scheme", ["w4a16", "gguf-q4_0", "w8a8-int8", "fp8-dynamic", "gguf-q8_0"])
def test_reasoning_and_code_models_stay_16_bit(model_dir: Path, tmp_path: Path, scheme: str) -> None:
    line = _one_error_line(
        quantize("--model", str(model_dir), "--scheme", scheme, "--out", str(tmp_path / "o"), "--tag", "code")
    )
    assert f"refusing {scheme}" in line and "tagged code" in line and "--force" in line
    assert "reasoning" in line  # says why: reasoning and code degrade first


def test_tags_come_from_the_config(model_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "inferline.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {"name": "coder", "tags": ["reasoning"], "backends": [{"name": "e0", "kind": "embedded"}]},
                ]
            }
        )
    )
    line = _one_error_line(
        quantize(
            "--model",
            str(model_dir),
            "--scheme",
            "w4a16",
            "--out",
            str(tmp_path / "o"),
            "--config",
            str(cfg),
            "--model-name",
            "coder",
        )
    )
    assert "tagged reasoning" in line
    line = _one_error_line(
        quantize(
            "--model",
            str(model_dir),
            "--scheme",
            "w4a16",
            "--out",
            str(tmp_path / "o"),
            "--config",
            str(cfg),
            "--model-name",
            "other",
        )
    )
    assert "no model named 'other' (models: coder)" in line
    line = _one_error_line(
        quantize("--model", str(model_dir), "--scheme", "w4a16", "--out", str(tmp_path / "o"), "--config", str(cfg))
    )
    assert "--config and --model-name go together" in line


def test_policy_allows_16_bit_and_untagged() -> None:
    assert policy_refusal(SCHEMES["gguf-f16"], ["code"]) is None
    assert policy_refusal(SCHEMES["w4a16"], ["chat"]) is None
    assert policy_refusal(SCHEMES["w4a16"], []) is None


def test_missing_venv_without_setup_is_one_line(model_dir: Path, tmp_path: Path) -> None:
    line = _one_error_line(
        quantize(
            "--model",
            str(model_dir),
            "--scheme",
            "gguf-q8_0",
            "--out",
            str(tmp_path / "o"),
            "--venv",
            str(tmp_path / "no-venv"),
            "--no-setup",
        )
    )
    assert "quant venv" in line and "scripts/quant/setup.sh" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no output, no temp dir, no venv


def test_list_schemes() -> None:
    r = quantize("--list")
    assert r.returncode == 0
    assert "w8a8-int8" in r.stdout and "GPU" in r.stdout and "llama.cpp" in r.stdout
