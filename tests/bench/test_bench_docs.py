"""docs/bench.md stays complete: every CLI option is documented and the Python example runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from inferline.bench.cli import app
from inferline.bench.fakeserver import ThreadedFakeServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "bench.md"


def test_every_option_is_documented() -> None:
    text = DOC.read_text()
    root = typer.Typer()
    root.add_typer(app, name="bench")
    group: Any = typer.main.get_command(root)
    bench = group.commands["bench"]
    missing = []
    for cmd in [bench, *bench.commands.values()]:
        for param in cmd.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            if not any(f"`{opt}" in text or f"[{opt}" in text or f" {opt} " in text for opt in param.opts):
                missing.append(f"{cmd.name} {param.opts[0]}")
    assert not missing, f"options missing from docs/bench.md: {missing}"


def test_python_api_example_runs() -> None:
    block = re.search(r"## Python API\n\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None
    with ThreadedFakeServer() as server:
        code = block.group(1).replace("http://127.0.0.1:8080", server.url).replace("duration_s=60", "duration_s=0.3")
        namespace: dict[str, Any] = {}
        exec(compile(code, str(DOC), "exec"), namespace)
    result = namespace["result"]
    assert [r.rate_rps for r in result.runs] == [2.0, 4.0]
    assert namespace["summary"]["completed"] == result.runs[0].summary["completed"]
