"""A workload to size: traffic, token lengths, SLOs and constraints (flags or a YAML file of the same keys).

    requests_per_day: 5000
    peak_rps: 1.5               # default: 3 x the daily mean
    prompt_tokens: 512          # or a distribution: lognormal:512:0.5
    output_tokens: 256
    ttft_slo_ms: 800
    tpot_slo_ms: 100            # optional
    quality: chat               # chat | summarization | reasoning
    offline: false              # must run without internet access
    compliance: false           # data must not leave your network
    needs_routing: false        # several models / fallback / per-key limits in front of the engines
Traffic follows a daily sine between a trough and PEAK_RPS with the mean of REQUESTS_PER_DAY.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inferline.advise.problems import validation_problems
from inferline.autoscale.dist import Dist

__all__ = ["Quality", "Workload", "WorkloadError", "load_workload"]

DEFAULT_PEAK_TO_MEAN = 3.0
SECONDS_PER_DAY = 86400.0


class WorkloadError(ValueError):
    """A workload that cannot be sized."""


class Quality(StrEnum):
    CHAT = "chat"
    SUMMARIZATION = "summarization"
    REASONING = "reasoning"


class Workload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "workload"
    requests_per_day: float = Field(gt=0, description="Requests per day.")
    peak_rps: float | None = Field(None, gt=0, description="Busiest-hour request rate (req/s).")
    prompt_tokens: str = Field("512", description="Prompt length: N or a distribution.")
    output_tokens: str = Field("256", description="Output length: N or a distribution.")
    ttft_slo_ms: float = Field(800.0, gt=0, description="p95 time-to-first-token objective.")
    tpot_slo_ms: float | None = Field(None, gt=0, description="p95 time-per-output-token objective.")
    quality: Quality = Quality.CHAT
    offline: bool = False
    compliance: bool = False
    needs_routing: bool = False

    @field_validator("prompt_tokens", "output_tokens", mode="before")
    @classmethod
    def _dist(cls, v: Any) -> str:
        text = str(v)
        try:
            d = Dist.parse(text, "tokens")
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if d.mean < 1:
            raise ValueError(f"must average at least 1 token; got {text!r}")
        return text

    @model_validator(mode="after")
    def _peak(self) -> Workload:
        if self.peak_rps is not None and self.peak_rps < self.mean_rps:
            raise ValueError(
                f"peak_rps {self.peak_rps:g} is below the daily mean {self.mean_rps:.3g} req/s "
                f"({self.requests_per_day:g} requests/day)"
            )
        return self

    @property
    def mean_rps(self) -> float:
        return self.requests_per_day / SECONDS_PER_DAY

    @property
    def peak(self) -> float:
        return self.peak_rps if self.peak_rps is not None else DEFAULT_PEAK_TO_MEAN * self.mean_rps

    @property
    def prompt(self) -> Dist:
        return Dist.parse(self.prompt_tokens)

    @property
    def output(self) -> Dist:
        return Dist.parse(self.output_tokens)

    @property
    def tokens_per_request(self) -> float:
        return self.prompt.mean + self.output.mean

    def hourly_rates(self, scale: float = 1.0) -> list[float]:
        """24 hourly mean rates (req/s): a sine with this mean and peak (trough clipped at 0), times SCALE."""
        mean, peak = self.mean_rps * scale, self.peak * scale
        amp = peak - mean
        rates = [max(0.0, mean - amp * math.cos(2 * math.pi * (h + 0.5) / 24)) for h in range(24)]
        total = sum(rates) / 24
        return [r * mean / total for r in rates] if total > 0 else rates  # keep the daily volume when clipped


def load_workload(path: Path | None, overrides: dict[str, Any]) -> Workload:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorkloadError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise WorkloadError(f"{path}: cannot read it ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise WorkloadError(f"{path}: a workload is a mapping of keys")
        data = loaded
        data.setdefault("name", path.stem)
    data.update({k: v for k, v in overrides.items() if v is not None})
    where = str(path) if path is not None else "workload"
    try:
        return Workload.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc).replace(
            "requests_per_day: required", "requests_per_day: required (--requests-per-day)"
        )
        raise WorkloadError(f"{where}: {problems}") from None
