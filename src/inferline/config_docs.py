"""Render docs/config.md from the config models' Field descriptions (a test keeps the file in sync)."""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from inferline.backends.discovery import DiscoveryConfig
from inferline.cache.config import CacheConfig
from inferline.config import (
    AdmissionConfig,
    BackendConfig,
    EmbeddedEngineConfig,
    InferlineConfig,
    ModelConfig,
    RoutingConfig,
    ServerConfig,
)
from inferline.deploy.config import (
    AutoscalingConfig,
    DeployConfig,
    EngineDeployConfig,
    GatewayDeployConfig,
    ModelCacheConfig,
    MonitoringConfig,
    RedisDeployConfig,
)
from inferline.limits.config import ApiKeyConfig, KeyLimits, LimitsConfig, StoreBreakerConfig

# Every section, in the order a reader meets them. A test fails if a section of InferlineConfig is missing.
SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("server", ServerConfig),
    ("routing", RoutingConfig),
    ("admission", AdmissionConfig),
    ("limits", LimitsConfig),
    ("limits.keys[]", ApiKeyConfig),
    ("limits.keys[].limits, limits.anonymous_limits", KeyLimits),
    ("limits.breaker, cache.breaker", StoreBreakerConfig),
    ("cache", CacheConfig),
    ("models[]", ModelConfig),
    ("models[].backends[]", BackendConfig),
    ("models[].backends[].embedded", EmbeddedEngineConfig),
    # engines found by DNS, and the Kubernetes deployment (docs/deploy.md)
    ("models[].discovery", DiscoveryConfig),
    ("deploy", DeployConfig),
    ("deploy.gateway", GatewayDeployConfig),
    ("deploy.redis", RedisDeployConfig),
    ("deploy.monitoring", MonitoringConfig),
    ("deploy.models.<name>", EngineDeployConfig),
    ("deploy.models.<name>.model_cache", ModelCacheConfig),
    ("deploy.models.<name>.autoscaling", AutoscalingConfig),
]

_EXAMPLE = """\
# inferline.yaml — two vLLM engines for one model, a fallback, the embedded engine as the safety net.
server:
  port: 8080
  cors_origins: ["https://app.example"]
  shutdown_grace_s: 30
routing:
  eject_after_failures: 3
  eject_cooldown_s: 10
models:
  - name: llama-8b
    fallback: [smollm2]
    backends:
      - {name: vllm-a, kind: vllm, url: "http://10.0.0.5:8000", upstream_model: meta-llama/Llama-3.1-8B-Instruct}
      - {name: vllm-b, kind: vllm, url: "http://10.0.0.6:8000", upstream_model: meta-llama/Llama-3.1-8B-Instruct}
  - name: smollm2
    backends:
      - {name: embedded-0, kind: embedded, embedded: {parallel: 8, ctx_per_slot: 2048}}
"""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        try:
            value: Any = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section)"
    elif info.default is PydanticUndefined:
        return "**required**"
    else:
        value = info.default
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "—"
    if isinstance(value, list) and len(value) > 0:
        return "(see below)"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _type_name(tp: Any) -> str:
    """A reader's name for an annotation: `int`, `float or null`, `one of: memory, redis`, `list of str`."""
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of: " + ", ".join(str(m.value) for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "section"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map {_type_name(args[0])} -> {_type_name(args[1])}" if args else "map"
    return getattr(tp, "__name__", str(tp))


def _type(info: FieldInfo) -> str:
    return _type_name(info.annotation)


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from `src/inferline/config.py` by `inferline config docs > docs/config.md`; a test fails when",
        "this file and the code disagree. Every section rejects unknown keys, so a typo fails at start-up.",
        "",
        "Precedence: CLI flags (`--port`, `--host`, `--parallel`...) > environment > the YAML file > defaults.",
        "Every key of every section can be set from the environment as `INFERLINE_<SECTION>__<KEY>`, e.g.",
        "`INFERLINE_SERVER__PORT=9000`, `INFERLINE_ADMISSION__QUEUE_TIMEOUT_S=10`, `INFERLINE_LIMITS__STORE=redis`",
        "(lists and maps as JSON: `INFERLINE_SERVER__CORS_ORIGINS='[\"*\"]'`); a variable naming no section",
        "is an error.",
        "Validate a file with `inferline config check FILE`; print the effective config with `inferline config show`.",
        "",
        "```yaml",
        _EXAMPLE.rstrip(),
        "```",
        "",
        "With no file, inferline serves one model `smollm2` on one embedded engine.",
    ]
    for name, model in SECTIONS:
        out += ["", f"## `{name}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for field, info in model.model_fields.items():
            desc = (info.description or "").replace("|", "\\|")
            out.append(f"| `{field}` | {_type(info).replace('|', 'or')} | {_default(info)} | {desc} |")
    extra = InferlineConfig.model_fields
    out += ["", "## top level", "", "| key | meaning |", "|---|---|"]
    for field, info in extra.items():
        out.append(f"| `{field}` | {info.description or 'see the section above'} |")
    return "\n".join(out) + "\n"
