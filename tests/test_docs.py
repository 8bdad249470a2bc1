"""The README's Python examples run against a live gateway, so the docs cannot drift from the code."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from support import Proc

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(gateway: Proc, code: str) -> None:
    assert "http://127.0.0.1:8080/v1" in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("http://127.0.0.1:8080/v1", gateway.base_url), str(README), "exec"), {})
    assert out.getvalue().strip(), "the example printed its answer"
