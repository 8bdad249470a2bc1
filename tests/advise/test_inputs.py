"""Prices and workloads: the example file loads, every field is checked, errors are one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inferline.advise.prices import EXAMPLE_PRICES, PricesError, load_prices
from inferline.advise.workload import Workload, WorkloadError, load_workload


def test_the_example_prices_load_and_say_when_they_are_from() -> None:
    p = load_prices()
    assert p.as_of == "2025-06-30" and p.currency == "USD"
    assert "EXAMPLE" in EXAMPLE_PRICES.read_text().splitlines()[0]


def _write(tmp_path: Path, data: object) -> Path:
    f = tmp_path / "prices.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["serverless"].pop("ttft_p95_ms"), "serverless.ttft_p95_ms: required"),
        (lambda d: d.pop("edge"), "edge: required"),
        (lambda d: d["dedicated"].update(gpu_hourly=-1), "dedicated.gpu_hourly: Input should be greater than 0"),
        (lambda d: d["proxy"].update(hourly_usd=1), "proxy.hourly_usd: unknown field"),
        (lambda d: d["managed_api"].pop("reasoning"), "managed_api.reasoning: required"),
    ],
)
def test_a_bad_prices_file_is_one_line_naming_the_field(tmp_path: Path, mutate: object, message: str) -> None:
    data = yaml.safe_load(EXAMPLE_PRICES.read_text())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(PricesError) as exc:
        load_prices(_write(tmp_path, data))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_missing_prices_file(tmp_path: Path) -> None:
    with pytest.raises(PricesError, match="no such file"):
        load_prices(tmp_path / "nope.yaml")


def test_workload_from_yaml_with_flag_overrides(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text("requests_per_day: 86400\npeak_rps: 3\nprompt_tokens: lognormal:400:0.5\nquality: reasoning\n")
    w = load_workload(f, {"peak_rps": 2.0, "offline": None})
    assert (w.name, w.mean_rps, w.peak, w.quality.value, w.prompt.mean) == ("w", 1.0, 2.0, "reasoning", 400)
    rates = w.hourly_rates()
    assert abs(sum(rates) / 24 - 1.0) < 1e-9 and abs(max(rates) - 2.0) < 0.05


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "requests_per_day: required"),
        ({"requests_per_day": 86400, "peak_rps": 0.5}, "below the daily mean"),
        ({"requests_per_day": 1000, "prompt_tokens": "many"}, "prompt_tokens"),
        ({"requests_per_day": 1000, "quality": "poetry"}, "quality"),
    ],
)
def test_bad_workloads(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        load_workload(None, overrides)


def test_default_peak_is_three_times_the_mean() -> None:
    assert Workload(requests_per_day=8640).peak == pytest.approx(0.3)


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    """A typo and what it hides are both reported: the user fixes the file in one go, not one error per run."""
    f = tmp_path / "w.yaml"
    f.write_text("requests_per_dya: 100\nquality: poetry\n")
    with pytest.raises(WorkloadError) as exc:
        load_workload(f, {})
    text = str(exc.value)
    assert "requests_per_day: required" in text and "requests_per_dya: unknown key" in text and "quality" in text
    assert "\n" not in text
