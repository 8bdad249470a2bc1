"""Every Python block in docs/client.md runs, against the fault server standing in for the gateway."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from client_fault_server import FaultServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
DOC_URL = "http://127.0.0.1:8080/v1"


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(fault: FaultServer, code: str) -> None:
    exec(compile(code.replace(DOC_URL, fault.url), str(DOC), "exec"), {"__name__": "__doc_example__"})
