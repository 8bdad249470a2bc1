"""The prices file: GPU-hours, per-token APIs, proxy and edge devices. Every field is required and checked.

`prices.example.yaml` (next to this module) is a clearly labelled EXAMPLE with its collection date; copy it
and edit it. A missing or misspelt field is one line naming it: `prices.yaml: serverless.ttft_p95_ms: required`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inferline.advise.problems import validation_problems

__all__ = ["EXAMPLE_PRICES", "ApiPrice", "Prices", "PricesError", "load_prices"]

EXAMPLE_PRICES = Path(__file__).with_name("prices.example.yaml")


class PricesError(ValueError):
    """A prices file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Dedicated(_Strict):
    gpu: str = Field(description="GPU model (label).")
    gpu_hourly: float = Field(gt=0, description="Price of one GPU-hour.")
    profile: str = Field(description="Engine profile for sizing: a sim profile name or a profile file.")
    node_overhead_ratio: float = Field(ge=0, description="Node costs beyond the GPU, as a fraction of its price.")
    min_replicas: int = Field(ge=0, description="Replicas kept at zero traffic.")
    target_utilization: float = Field(gt=0, le=1, description="Run replicas at this share of their SLO capacity.")


class Proxy(_Strict):
    hourly: float = Field(ge=0, description="Price of one gateway replica-hour.")
    replicas: int = Field(ge=1, description="Gateway replicas.")
    added_ttft_ms: float = Field(ge=0, description="TTFT the gateway adds.")


class ApiPrice(_Strict):
    input_per_1m: float = Field(ge=0, description="Price per million prompt tokens.")
    output_per_1m: float = Field(ge=0, description="Price per million output tokens.")
    ttft_p95_ms: float = Field(gt=0, description="p95 time to first token the service delivers.")
    max_rps: float = Field(gt=0, description="Rate limit, requests/s.")


class ManagedApi(_Strict):
    chat: ApiPrice
    reasoning: ApiPrice


class Edge(_Strict):
    device: str = Field(description="Device (label).")
    hourly: float = Field(ge=0, description="Amortised device price and power per hour.")
    profile: str = Field(description="Engine profile of one device.")
    max_devices: int = Field(ge=1, description="Most devices a site can run.")


class Prices(_Strict):
    as_of: str = Field(description="When the prices were collected.")
    currency: str
    hours_per_month: float = Field(gt=0)
    dedicated: Dedicated
    proxy: Proxy
    serverless: ApiPrice
    managed_api: ManagedApi
    edge: Edge


def load_prices(path: Path | None = None) -> Prices:
    """The prices in PATH (default: the bundled example)."""
    path = path or EXAMPLE_PRICES
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PricesError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PricesError(f"{path}: cannot read it ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PricesError(f"{path}: the top level must be a mapping of sections")
    if isinstance(data.get("as_of"), (int, float)) or hasattr(data.get("as_of"), "isoformat"):
        data["as_of"] = str(data["as_of"])  # YAML reads 2025-06-30 as a date
    try:
        return Prices.model_validate(data)
    except ValidationError as exc:
        raise PricesError(f"{path}: {validation_problems(exc, unknown='unknown field (typo?)')}") from None
