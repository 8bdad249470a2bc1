"""The compiled hot path (src/inferline/hot_path.py): used only while current, pure Python on request, and
free of the one Python pattern mypyc was found to miscompile here."""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inferline import hot_path

_WHICH = (
    "import inferline.gateway.relay as r, inferline.net.server as s; from inferline import hot_path; "
    "print(hot_path.mode); print(r.__file__); print(s.__file__)"
)


def _import_in_child(**env: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _WHICH], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_pure_python_on_request_runs_every_hot_module_from_source() -> None:
    mode, relay, server = _import_in_child(INFERLINE_PURE_PYTHON="1")
    assert mode == "pure Python (INFERLINE_PURE_PYTHON=1)"
    assert relay.endswith("relay.py") and server.endswith("server.py")


def test_a_current_build_is_the_one_that_runs() -> None:
    if hot_path.why_not_compiled() is not None and not os.environ.get("CI"):
        pytest.skip(f"hot path not compiled here: {hot_path.why_not_compiled()} (`make compile`)")
    # Under CI the build must be there: CI tests what `make serve` runs.
    mode, relay, server = _import_in_child(INFERLINE_PURE_PYTHON="0")
    assert mode == "compiled"
    assert relay.endswith(".so") and server.endswith(".so")


def test_a_missing_or_stale_build_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hot_path.PURE_ENV, raising=False)
    manifest = tmp_path / ".hot_path.json"
    monkeypatch.setattr(hot_path, "MANIFEST", manifest)
    assert hot_path.why_not_compiled() == "not compiled (`make compile` builds it in a source checkout)"
    for edited in ("inferline/gateway/relay.py", "inferline/config.py"):  # hot, and a module hot ones import
        stale = hot_path.source_hashes()
        stale[edited] = "0" * 64  # edited since the build
        manifest.write_text(json.dumps({"python": sys.version, "sources": stale}))
        assert hot_path.why_not_compiled() == "the compiled build is older than its sources (run `make compile`)"
    manifest.write_text(json.dumps({"python": "3.10.0", "sources": hot_path.source_hashes()}))
    assert "older than its sources" in str(hot_path.why_not_compiled())
    for bad in ("{not json", "null"):
        manifest.write_text(bad)
        assert "unreadable build manifest" in str(hot_path.why_not_compiled())


def test_an_extension_beside_a_module_off_the_list_is_never_loaded(tmp_path: Path) -> None:
    """A build's leftover for a module no longer compiled (or one whose build failed) would shadow the
    module's .py: every inferline module off the list comes from its source, in either mode."""
    src = tmp_path / "src"
    pkg = src / "inferline"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from inferline import hot_path\nhot_path.choose()\n")
    (pkg / "hot_path.py").write_bytes(Path(hot_path.__file__).read_bytes())
    (pkg / "plain.py").write_text("WHERE = 'source'\n")
    (pkg / ("plain" + importlib.machinery.EXTENSION_SUFFIXES[0])).write_bytes(b"not an extension")
    done = subprocess.run(
        [sys.executable, "-c", "import inferline.plain as p; print(p.WHERE)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(src)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "source"


def test_no_hot_function_binds_one_except_name_to_two_types() -> None:
    """mypyc types a local name once per function: `except Retryable as exc` then `except GatewayError as
    exc` compiled to a TypeError, and a prompt too long for the context got a 500 instead of a 400."""
    found = []
    for module in hot_path.HOT_MODULES:
        path = hot_path.source_path(module)
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            types: dict[str, set[str]] = {}
            for node in ast.walk(fn):
                if isinstance(node, ast.ExceptHandler) and node.name:
                    types.setdefault(node.name, set()).add(ast.unparse(node.type) if node.type else "")
            found += [f"{path.name}:{fn.lineno} {fn.name}: {n} {sorted(t)}" for n, t in types.items() if len(t) > 1]
    assert found == []
