"""`inferline top`'s numbers from successive scrapes (observe/topdata.py), without a gateway."""

from __future__ import annotations

import math

import pytest

from inferline.observe.topdata import NotInferline, ScrapeHistory, histogram_quantile, parse_scrape

B0 = 'model="m",backend="b0"'
B1 = 'model="m",backend="b1"'


def exposition(*, tokens0: float, tokens1: float, fast: float, slow: float, errors: float, kv1: float) -> str:
    """A gateway's /metrics: b0 idle-ish, b1 loaded (KV KV1); TTFT: FAST obs <= 0.1 s, SLOW in (0.5, 1]."""
    lines = [
        f"inferline_backend_healthy{{{B0}}} 1",
        f"inferline_backend_healthy{{{B1}}} 1",
        f"inferline_backend_kv_cache_usage_ratio{{{B0}}} 0.1",
        f"inferline_backend_kv_cache_usage_ratio{{{B1}}} {kv1}",
        f"inferline_backend_kv_cache_fragmentation_ratio{{{B0}}} NaN",
        f"inferline_backend_kv_cache_fragmentation_ratio{{{B1}}} 0.25",
        f"inferline_backend_requests_running{{{B0}}} 1",
        f"inferline_backend_requests_running{{{B1}}} 8",
        f"inferline_backend_requests_waiting{{{B0}}} 0",
        f"inferline_backend_requests_waiting{{{B1}}} 4",
        f"inferline_backend_in_flight_requests{{{B0}}} 1",
        f"inferline_backend_in_flight_requests{{{B1}}} 12",
        f"inferline_generation_tokens_total{{{B0}}} {tokens0}",
        f"inferline_generation_tokens_total{{{B1}}} {tokens1}",
        'inferline_model_ready_backends{model="m"} 2',
        'inferline_queue_depth{model="m"} 3',
        f'inferline_requests_total{{{B1},status="200",outcome="ok"}} {fast + slow}',
        f'inferline_requests_total{{{B1},status="502",outcome="upstream_error"}} {errors}',
        'inferline_requests_total{model="m",backend="none",status="429",outcome="rate_limited"} 5',
    ]
    for le, count in (("0.1", fast), ("0.5", fast), ("1.0", fast + slow), ("+Inf", fast + slow)):
        lines.append(f'inferline_time_to_first_token_seconds_bucket{{{B1},le="{le}"}} {count}')
    lines.append(f"inferline_time_to_first_token_seconds_count{{{B1}}} {fast + slow}")
    lines.append(f"inferline_time_to_first_token_seconds_sum{{{B1}}} 0")
    return "\n".join(["# TYPE inferline_time_to_first_token_seconds histogram", *lines]) + "\n"


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    assert histogram_quantile(0.5, [(0.1, 0), (0.5, 0), (1.0, 10), (math.inf, 10)]) == pytest.approx(0.75)
    assert histogram_quantile(0.95, [(0.1, 10), (math.inf, 10)]) == pytest.approx(0.095)
    assert histogram_quantile(0.99, [(0.1, 0), (math.inf, 10)]) == 0.1  # above the last bound: the bound
    assert histogram_quantile(0.5, [(0.1, 0), (math.inf, 0)]) is None


def test_frame_from_two_scrapes_rates_quantiles_and_the_hottest_engine() -> None:
    h = ScrapeHistory(rate_window_s=10, quantile_window_s=60)
    h.add(parse_scrape(exposition(tokens0=0, tokens1=0, fast=100, slow=0, errors=0, kv1=0.9), at=0.0))
    h.add(parse_scrape(exposition(tokens0=50, tokens1=900, fast=100, slow=20, errors=2, kv1=0.9), at=10.0))
    f = h.frame()
    assert f.missing == []
    (m,) = f.models
    assert (m.model, m.ready_backends, m.queue, m.rejected) == ("m", 2, 3, 0)
    assert m.requests_per_s == pytest.approx(2.2)  # 20 ok + 2 errors in 10 s
    b1, b0 = m.backends  # hottest first
    assert f.hottest is b1
    assert (b1.backend, b1.kv, b1.fragmentation, b1.running, b1.waiting) == ("b1", 0.9, 0.25, 8, 4)
    assert b0.fragmentation is None  # NaN: unknown
    assert b1.tokens_per_s == pytest.approx(90) and b0.tokens_per_s == pytest.approx(5)
    assert b1.errors == 2
    # Only the 20 slow requests happened in the window: both quantiles lie in (0.5, 1].
    assert b1.ttft_p50 == pytest.approx(0.75) and b1.ttft_p95 == pytest.approx(0.975)
    assert b0.ttft_p50 is None


def test_a_single_scrape_has_gauges_but_no_rates() -> None:
    h = ScrapeHistory()
    h.add(parse_scrape(exposition(tokens0=0, tokens1=0, fast=1, slow=0, errors=0, kv1=0.5), at=0.0))
    (m,) = h.frame().models
    assert m.backends[0].kv == 0.5 and m.backends[0].tokens_per_s is None and m.requests_per_s is None


def test_old_scrapes_leave_the_window() -> None:
    h = ScrapeHistory(rate_window_s=5, quantile_window_s=20)
    for t in range(0, 100, 1):
        h.add(parse_scrape(exposition(tokens0=t, tokens1=10 * t, fast=0, slow=t, errors=0, kv1=0.5), at=float(t)))
    f = h.frame()
    assert len(h._scrapes) <= 22
    assert f.rate_window_s == pytest.approx(5) and f.quantile_window_s == pytest.approx(20)
    assert f.models[0].backends[0].tokens_per_s == pytest.approx(10)


def test_missing_metrics_are_listed_and_foreign_text_is_refused() -> None:
    h = ScrapeHistory()
    h.add(parse_scrape('inferline_queue_depth{model="m"} 0\n', at=0.0))
    f = h.frame()
    assert "inferline_backend_kv_cache_usage_ratio" in f.missing and f.models[0].backends == []
    with pytest.raises(NotInferline):
        parse_scrape('vllm:num_requests_running{engine="0"} 1\n', at=0.0)
    with pytest.raises(ValueError):
        parse_scrape("this is { not prometheus\n", at=0.0)
