"""`inferline eval` end to end on the real embedded engine (llama.cpp, SmolLM2): exit codes, report, errors.

A small set keeps this in the fast tier (~10-20 s). The same endpoint as baseline and candidate must pass a
2pp gate (temperature 0, one request at a time: identical answers) and fail an impossible one; two model
names behind one gateway are compared the way a canary would be.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import INFERLINE, Proc, free_port, start_engine, start_gateway

# Every CLI run starts Python, matplotlib and llama.cpp requests: ~15 s on a quiet machine, minutes on a loaded one.
pytestmark = pytest.mark.timeout(900)

SET = [
    {
        "id": "s1",
        "category": "classification",
        "prompt": "Review: I loved this movie, it was wonderful.\nSentiment:",
        "choices": [" positive", " negative"],
        "answer": 0,
    },
    {
        "id": "s2",
        "category": "classification",
        "prompt": "Review: The food was cold and tasted terrible.\nSentiment:",
        "choices": [" positive", " negative"],
        "answer": 1,
    },
    {"id": "q1", "category": "arithmetic", "prompt": "1, 2, 3, 4,", "choices": [" 5", " 7", " 3"], "answer": 0},
    {
        "id": "c1",
        "category": "chat",
        "prompt": "What is the capital of France?",
        "answer": "Paris",
        "checks": ["no_refusal"],
        "max_tokens": 16,
        "reference": " The capital of France is Paris.",
    },
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_engine(tmp_path_factory.mktemp("eval-engine"), "engine", parallel=2, ctx_per_slot=1024)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval-set") / "small.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in SET))
    return path


def run_eval(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERLINE, "eval", *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_same_endpoint_passes_the_gate_and_writes_the_report(engine: Proc, eval_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = run_eval(
        "--set",
        str(eval_set),
        "-e",
        f"base={engine.url}",
        "-e",
        f"cand={engine.url}/v1",
        "--gate",
        "accuracy_drop<=2pp,ppl_ratio<=1.05",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "cand vs base: accuracy drop +0.0pp" in r.stdout and "PASS" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "report.md", "results.json"]
    report = (out / "report.md").read_text()
    assert "**PASS**" in report and "| endpoint | arithmetic | chat | classification | overall |" in report
    results = json.loads((out / "results.json").read_text())
    (base, cand) = results["summaries"]
    assert base["logprobs"] == "grammar"  # llama.cpp ignores echo: token-grammar scoring
    assert base["overall"]["n"] == 4 and base["unscored"] == 0
    assert base["ppl"] is not None and base["ppl"] == pytest.approx(cand["ppl"], rel=1e-3)
    assert base["categories"]["classification"]["correct"] == 2  # SmolLM2 gets both sentiments right
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_failed_gate_exits_1(engine: Proc, eval_set: Path, tmp_path: Path) -> None:
    r = run_eval(
        "--set",
        str(eval_set),
        "-e",
        f"base={engine.url}",
        "-e",
        f"cand={engine.url}",
        "--gate",
        "accuracy_drop<=-5pp",
        "--out",
        str(tmp_path / "r"),
        "--category",
        "classification",
    )
    assert r.returncode == 1, r.stderr
    assert "FAIL" in r.stdout and (tmp_path / "r" / "report.md").is_file()


def test_endpoint_down_exits_2_and_writes_nothing(engine: Proc, eval_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = run_eval(
        "--set",
        str(eval_set),
        "-e",
        f"base={engine.url}",
        "-e",
        f"down=http://127.0.0.1:{free_port()}",
        "--out",
        str(out),
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: endpoint down (http://127.0.0.1:")
    assert "unreachable" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".report*"))


def test_bad_line_exits_2_with_its_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SET[0]) + "\n" + '{"id": "x", "category": "c", "prompt": "p", "choices": ["a", "b"]}\n')
    out = tmp_path / "report"
    r = run_eval("--set", str(bad), "-e", "a=http://127.0.0.1:9", "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:2: with `choices`, `answer` must be the index" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "nourl"], "expected NAME=URL"),
        (["-e", "a=ftp://x"], "must start with http"),
        (["-e", "a=http://x,colour=red"], "bad option 'colour=red'"),
        (["-e", "a=http://x", "-e", "a=http://y"], "must be unique"),
        (["-e", "a=http://x", "--gate", "accuracy_drop<=2pp"], "needs a baseline and at least one candidate"),
        (["-e", "a=http://x", "-e", "b=http://y", "--gate", "speed>=2"], "unknown metric"),
        (["-e", "a=http://x", "--category", "poetry"], "unknown category poetry"),
        ([], "give at least one --endpoint"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    r = run_eval(*args, "--out", str(tmp_path / "r"), timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_two_model_names_behind_one_gateway(eval_set: Path, tmp_path: Path) -> None:
    """The canary comparison: one gateway, two model names; each scored through the gateway."""
    eport = free_port()
    engine_cfg = {"parallel": 2, "ctx_per_slot": 1024}
    cfg = {
        "routing": {"load_interval_s": 0.2},
        "models": [
            {
                "name": "smollm2-a",
                "backends": [{"name": "a-0", "kind": "embedded", "embedded": {**engine_cfg, "port": eport}}],
            },
            {"name": "smollm2-b", "backends": [{"name": "b-0", "kind": "embedded", "embedded": engine_cfg}]},
        ],
    }
    gw = start_gateway(tmp_path, cfg)
    try:
        tok = f"tokenize=http://127.0.0.1:{eport}/tokenize"  # the gateway has no /tokenize; any same-vocab engine
        r = run_eval(
            "--set",
            str(eval_set),
            "-e",
            f"a={gw.url},model=smollm2-a,{tok}",
            "-e",
            f"b={gw.url},model=smollm2-b,{tok}",
            "-e",
            f"b-nolp={gw.url},model=smollm2-b",
            "--gate",
            "accuracy_drop<=2pp",
            "--out",
            str(tmp_path / "r"),
        )
    finally:
        gw.stop()
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    a, b, nolp = res["summaries"]
    assert (a["model"], b["model"]) == ("smollm2-a", "smollm2-b")
    assert a["logprobs"] == b["logprobs"] == "grammar" and a["overall"]["n"] == b["overall"]["n"] == 4
    # Without a tokenizer the gateway gives no prompt log-probabilities: choices are left unscored, and said so.
    assert nolp["logprobs"] == "none" and nolp["unscored"] == 3 and nolp["overall"]["n"] == 1
    assert "not scored" in (tmp_path / "r" / "report.md").read_text()
    # The gateway's /metrics has no process_* series (its own registry): the report says so instead of guessing.
    assert a["memory_bytes"] is None and "no process_resident_memory_bytes" in a["memory_source"]
