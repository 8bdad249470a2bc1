"""Start-up failures say one thing clearly: one `error:` line naming the fix, exit 1, no traceback
(unless --log-level debug). Each case runs `inferline serve` as a subprocess, as an operator would."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from support import INFERLINE, free_port

DEADLINE_S = 120  # a subprocess that imports the package and probes: seconds, generous for a busy machine


def _serve(tmp_path: Path, config: str | bytes | dict[str, object], *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "inferline.yaml"
    if isinstance(config, dict):
        path.write_text(yaml.safe_dump(config))
    elif isinstance(config, bytes):
        path.write_bytes(config)
    else:
        path.write_text(config)
    return subprocess.run(
        [INFERLINE, "serve", "--config", str(path), "--port", str(free_port()), *extra],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def _dead_engine(url: str, wait_s: float = 1) -> dict[str, object]:
    return {
        "server": {"engine_wait_s": wait_s},
        "models": [{"name": "m", "backends": [{"name": "m-0", "kind": "vllm", "url": url}]}],
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("models: [\n", r"not valid YAML: expected the node content, but found '<stream end>' at line 2"),
        (b"\xff\xfe models: []", "not UTF-8 text"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ({"server": {"max_body_bytes": "big"}}, "server.max_body_bytes"),
    ],
)
def test_a_bad_config_is_one_error_line_and_exit_1(
    tmp_path: Path, content: str | bytes | dict[str, object], expected: str
) -> None:
    done = _serve(tmp_path, content)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = _error_lines(done.stderr)
    assert len(errors) == 1 and expected in errors[0] and "inferline.yaml" in errors[0], done.stderr


def test_a_missing_config_file_names_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [INFERLINE, "serve", "--config", str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert _error_lines(done.stderr) == [f"error: {tmp_path / 'nope.yaml'}: no such file"]


def test_an_engine_url_where_nothing_listens_names_model_url_and_fix(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = _serve(tmp_path, _dead_engine(url))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = _error_lines(done.stderr)
    assert f"model 'm' has no engine that answers (m-0 at {url}: cannot connect" in line
    assert "fix the backend `url` in the config or start the engine" in line
    assert "ready on" not in done.stderr  # it never started serving


def test_an_engine_that_accepts_but_never_answers_is_named_too(tmp_path: Path) -> None:
    with socket.socket() as blackhole:  # accepts connections (the kernel does), never reads or answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        done = _serve(tmp_path, _dead_engine(url))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = _error_lines(done.stderr)
    assert f"m-0 at {url}: no answer within" in line


def test_log_level_debug_adds_the_traceback(tmp_path: Path) -> None:
    done = _serve(tmp_path, _dead_engine(f"http://127.0.0.1:{free_port()}"), "--log-level", "debug")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "StartupError" in done.stderr
    assert len(_error_lines(done.stderr)) == 1


def test_the_cli_does_not_load_plotting_at_start() -> None:
    """Every `inferline serve` worker would carry matplotlib (~30 MB, ~0.3 s) for commands it never runs."""
    import sys

    code = "import sys, inferline.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE_S, check=True)
    assert out.stdout.strip() == "[]"
