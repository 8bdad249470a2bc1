"""BenchConfig: one typed, frozen description of a benchmark run (the CLI builds it, so can scripts)."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from inferline.bench.metrics import SLO

DEFAULT_URL = "http://127.0.0.1:8080"  # the gateway's default bind
DEFAULT_NUM_REQUESTS = 100  # when neither --duration nor --num-requests bounds a run
DEFAULT_INPUT_LEN = 256
DEFAULT_OUTPUT_LEN = 128
SHAREGPT_MIN_TOKENS = 4  # vLLM's ShareGPT sampling: prompt and completion of at least 4 tokens,
SHAREGPT_MAX_PROMPT_TOKENS = 1024  # a prompt of at most 1024,
SHAREGPT_MAX_TOTAL_TOKENS = 2048  # and prompt + completion of at most 2048


class Endpoint(StrEnum):
    CHAT = "chat"  # /v1/chat/completions
    COMPLETIONS = "completions"  # /v1/completions


class Workload(StrEnum):
    RANDOM = "random"  # synthetic prompts with the given length distributions
    PREFIX = "prefix"  # groups of requests sharing a long system prompt
    MIX = "mix"  # short and long requests mixed
    SHAREGPT = "sharegpt"  # conversations from a ShareGPT-format JSON file


class LengthDist(StrEnum):
    FIXED = "fixed"
    UNIFORM = "uniform"  # mean*(1-spread) .. mean*(1+spread)
    NORMAL = "normal"  # sd = spread*mean
    LOGNORMAL = "lognormal"  # mean as given, coefficient of variation = spread


class LengthSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    mean: int = Field(gt=0, description="Mean length in tokens.")
    dist: LengthDist = LengthDist.FIXED
    spread: float = Field(0.5, ge=0, description="Spread as a fraction of the mean (see LengthDist).")


class BenchConfig(BaseModel):
    """Load shape (open or closed loop), workload, bounds and outputs of one `inferline bench` call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(DEFAULT_URL, description="Base URL; /v1 is appended unless present.")
    model: str | None = Field(None, description="Model name; default: the first from GET /v1/models.")
    api_key: SecretStr | None = None
    endpoint: Endpoint = Endpoint.CHAT

    rates: tuple[float, ...] = Field((), description="Open loop: arrival rates (req/s) to run in turn.")
    burstiness: float = Field(1.0, gt=0, description="Gamma shape of the gaps; 1.0 = Poisson.")
    concurrency: tuple[int, ...] = Field(
        (), description="Closed loop: users each with one request in flight; with rates: a cap."
    )
    duration_s: float | None = Field(None, gt=0, description="Arrival window of each run, seconds.")
    num_requests: int | None = Field(None, gt=0, description="Requests per run.")
    grace_s: float = Field(30.0, ge=0, description="After the window, wait this long for stragglers.")
    request_timeout_s: float = Field(300.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    warmup_requests: int = Field(0, ge=0)

    workload: Workload = Workload.RANDOM
    input: LengthSpec = LengthSpec(mean=DEFAULT_INPUT_LEN)
    output: LengthSpec | None = Field(None, description="None: 128 tokens, or the dataset's own lengths.")
    dataset: Path | None = None
    prefix_len: int = Field(512, gt=0)
    groups: int = Field(8, gt=0)
    short_frac: float = Field(0.8, ge=0, le=1)
    long_input_len: int = Field(2048, gt=0)
    long_output_len: int = Field(256, gt=0)
    tokenizer: str | None = None
    seed: int = 0

    ignore_eos: bool = False
    include_usage: bool = True
    extra_body: dict[str, Any] = Field(default_factory=dict)
    slo: SLO | None = None
    save_requests: bool = False

    @model_validator(mode="after")
    def _check(self) -> BenchConfig:
        if not self.rates and not self.concurrency:
            raise ValueError("give --rate (open loop, req/s) or --concurrency (closed loop, users)")
        if any(not (r > 0) or math.isnan(r) for r in self.rates):
            raise ValueError(f"every rate must be > 0 (inf allowed); got {list(self.rates)}")
        if any(c < 1 for c in self.concurrency):
            raise ValueError(f"concurrency must be >= 1; got {list(self.concurrency)}")
        if any(math.isinf(r) for r in self.rates) and self.num_requests is None and self.duration_s is not None:
            raise ValueError("--rate inf sends every request at once: it needs --num-requests")
        if len(self.rates) > 1 and len(self.concurrency) > 1:
            raise ValueError("sweep either --rate or --concurrency, not both")
        if self.workload is Workload.SHAREGPT and self.dataset is None:
            raise ValueError("--workload sharegpt needs --dataset FILE")
        return self

    @property
    def open_loop(self) -> bool:
        return bool(self.rates)

    @property
    def effective_num_requests(self) -> int | None:
        if self.num_requests is None and self.duration_s is None:
            return DEFAULT_NUM_REQUESTS
        return self.num_requests

    @property
    def base_url(self) -> str:
        u = self.url.rstrip("/")
        return u if u.endswith("/v1") else u + "/v1"

    @property
    def request_url(self) -> str:
        path = "/chat/completions" if self.endpoint is Endpoint.CHAT else "/completions"
        return self.base_url + path

    def runs(self) -> list[tuple[float | None, int | None]]:
        """(rate, concurrency) of each run: a sweep over whichever of the two is a list."""
        if self.rates:
            cap = self.concurrency[0] if self.concurrency else None
            return [(r, cap) for r in self.rates]
        return [(None, c) for c in self.concurrency]

    def public_json(self) -> dict[str, Any]:
        """The config as written to results: the API key is never included."""
        d = self.model_dump(mode="json", exclude={"api_key"})
        d["rates"] = [("inf" if math.isinf(r) else r) for r in self.rates]
        d["api_key_set"] = self.api_key is not None
        return d


def parse_list(text: str, kind: type[float] | type[int], name: str) -> tuple[Any, ...]:
    """`1,2,4` -> (1, 2, 4); `inf` allowed for floats."""
    out: list[Any] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(kind(item))
        except ValueError:
            raise ValueError(f"--{name}: {item!r} is not a number (expected e.g. 1,2,4)") from None
    if not out:
        raise ValueError(f"--{name}: empty list")
    return tuple(out)
