"""/metrics: inferline_* series exist, follow conventions, and move with traffic."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support import Proc


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics", timeout=5).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == val for k, val in labels.items())
    )


def test_metrics_move_after_traffic(gateway: Proc) -> None:
    before = _samples(gateway.url)
    r = httpx.post(
        gateway.base_url + "/chat/completions",
        json={
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 5,
            "stream": True,
        },
        timeout=60,
    )
    assert r.status_code == 200
    httpx.post(gateway.base_url + "/chat/completions", json={"model": "nope", "messages": []}, timeout=5)
    after = _samples(gateway.url)

    ok = dict(model="smollm2", backend="embedded-0", status="200", outcome="ok")
    assert _total(after, "inferline_requests_total", **ok) == _total(before, "inferline_requests_total", **ok) + 1
    assert _total(after, "inferline_requests_total", status="400") >= 1
    gen = dict(model="smollm2", backend="embedded-0")
    assert _total(after, "inferline_generation_tokens_total", **gen) > _total(
        before, "inferline_generation_tokens_total", **gen
    )
    assert _total(after, "inferline_prompt_tokens_total", **gen) > _total(
        before, "inferline_prompt_tokens_total", **gen
    )
    for hist in (
        "inferline_time_to_first_token_seconds",
        "inferline_e2e_request_latency_seconds",
        "inferline_inter_token_latency_seconds",
    ):
        count = _total(after, hist + "_count", model="smollm2")
        assert count > _total(before, hist + "_count", model="smollm2"), hist
        # buckets resolve 10 ms .. 30 s
        les = {dict(ls)["le"] for (n, ls) in after if n == hist + "_bucket"}
        assert {"0.01", "30.0"} <= les
    assert _total(after, "inferline_backend_healthy", backend="embedded-0") == 1
    kv = _total(after, "inferline_backend_kv_cache_usage_ratio", backend="embedded-0")
    assert 0 <= kv <= 1
    assert ("inferline_requests_in_flight", (("model", "smollm2"),)) in after


def test_no_api_key_in_logs_or_metrics(gateway: Proc) -> None:
    secret = "sk-test-SECRET-should-never-appear-123"
    httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        headers={"authorization": f"Bearer {secret}"},
        timeout=60,
    )
    assert secret not in httpx.get(gateway.url + "/metrics", timeout=5).text
    assert secret not in gateway.log()
    assert "Hi" not in [line.split('"')[-1] for line in gateway.log().splitlines()], "no prompt text in logs"
