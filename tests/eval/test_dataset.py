"""The eval set format: every bad line named with its number; the shipped set loads and is balanced."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from inferline.eval.dataset import EvalSetError, load_eval_set, shipped_set_path

GOOD = '{"id": "a", "category": "chat", "prompt": "Hi?", "answer": "hello"}'


def _write(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "set.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_shipped_set_has_five_balanced_categories() -> None:
    items = load_eval_set(shipped_set_path())
    counts = Counter(i.category for i in items)
    assert set(counts) == {"chat", "summarization", "classification", "arithmetic", "code"}
    assert all(n >= 30 for n in counts.values()), counts
    assert any(i.is_choice for i in items) and any(i.is_generated for i in items)
    assert sum(1 for i in items if i.reference) >= 20
    assert (shipped_set_path().parent / "README.md").read_text().count("CC0-1.0") == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "must be a JSON object"),
        ('{"id": "b", "prompt": "x", "answer": "y"}', "`category` is required"),
        ('{"id": "b", "category": "c", "prompt": "x"}', "give `answer`"),
        (
            '{"id": "b", "category": "c", "prompt": "x", "choices": ["a", "b"], "answer": 2}',
            "index of the right choice",
        ),
        ('{"id": "b", "category": "c", "prompt": "x", "choices": ["a"], "answer": 0}', "at least 2"),
        ('{"id": "b", "category": "c", "prompt": "x", "answer": "y", "match": "fuzzy"}', "`match` must be one of"),
        ('{"id": "b", "category": "c", "prompt": "x", "checks": ["shout"]}', "unknown check"),
        ('{"id": "b", "category": "c", "prompt": "x", "checks": ["regex:("]}', "not a valid regex"),
        ('{"id": "b", "category": "c", "prompt": "x", "answer": "y", "colour": 1}', "unknown key(s) colour"),
        ('{"id": "a", "category": "c", "prompt": "x", "answer": "y"}', "duplicate id 'a' (first on line 1)"),
    ],
)
def test_bad_line_is_named_with_its_number(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, GOOD, "", "# a comment", line)
    with pytest.raises(EvalSetError) as err:
        load_eval_set(path)
    assert f"{path}:4:" in str(err.value) and message in str(err.value)


def test_shipped_set_is_its_generators_output(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "eval" / "build_eval_set.py"
    out = tmp_path / "set.jsonl"
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True, timeout=60)
    assert out.read_text() == shipped_set_path().read_text(), "run: python scripts/eval/build_eval_set.py"


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="no such file"):
        load_eval_set(tmp_path / "nope.jsonl")
    with pytest.raises(EvalSetError, match="no items"):
        load_eval_set(_write(tmp_path, "# only a comment"))
