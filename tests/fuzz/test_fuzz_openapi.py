"""The gateway's OpenAPI document (/openapi.json), fuzzed with schemathesis against a running gateway.

The gateway runs in front of the simulator (`inferline sim --profile instant`, a simulator: answers at once),
so thousands of generated requests reach an engine in a minute. Checks: every schemathesis check except
positive_data_acceptance (the parser is stricter than JSON Schema can say: 1.0 is an integer to JSON Schema
but not to the strict parser, and what fits a context depends on the engine): zero 5xx, zero responses
that break their documented schema, status code, content type or headers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import BIN, SKIP_HEAVY, Proc, sim_config, start_gateway, start_sim

MAX_EXAMPLES = 100  # per operation and phase: ~2,000 requests, about a minute on a quiet machine


@pytest.fixture(scope="module")
def gateway_over_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("openapi")
    sim = start_sim(tmp, "--profile", "instant")
    gw = start_gateway(tmp, sim_config(sim.url))
    yield gw
    gw.stop()
    sim.stop()


def test_the_document_lists_every_route_and_the_configured_models(gateway_over_sim: Proc) -> None:
    doc = httpx.get(gateway_over_sim.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/ready"}
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert chat["properties"]["model"]["enum"] == ["smollm2"]
    assert doc["paths"]["/v1/chat/completions"]["post"]["responses"]["429"]["headers"]["Retry-After"]


def test_a_large_non_stream_answer_arrives_whole(gateway_over_sim: Proc) -> None:
    """Regression (found by schemathesis): a ~190 KB answer came in several reads and only the first was
    kept, so the gateway answered 502 "not JSON"."""
    r = httpx.post(gateway_over_sim.base_url + "/completions", json={"model": "smollm2", "prompt": [0, 0]}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert len(r.content) > 100_000 and body["usage"]["completion_tokens"] == len(body["choices"][0]["text"].split())


@pytest.mark.heavy
@pytest.mark.timeout(1200)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(gateway_over_sim: Proc, tmp_path: Path) -> None:
    if SKIP_HEAVY:
        pytest.skip("INFERLINE_SKIP_HEAVY=1")
    report_dir = tmp_path / "report"
    done = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            gateway_over_sim.url + "/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--request-timeout",
            "60",
            "--report",
            "json",
            "--report-dir",
            str(report_dir),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=1100,
    )
    (report,) = report_dir.glob("*.json")
    result = json.loads(report.read_text())
    summary = result["test_cases"]
    print(f"schemathesis: {summary['generated']} test cases, {summary['with_failures']} with failures")
    assert result["failures"] == [] and result["errors"] == [], done.stdout[-4000:]
    assert done.returncode == 0, done.stdout[-4000:]
    assert summary["generated"] >= 500 and summary["with_failures"] == 0
    assert result["operations"]["tested"] == result["operations"]["total"]
