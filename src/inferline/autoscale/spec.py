"""The HorizontalPodAutoscaler `autoscaling/v2` spec as typed values, parsed and defaulted like the API server.

Defaulting follows pkg/apis/autoscaling/v2/defaults.go: minReplicas 1; when `behavior` is present, each
unset direction gets the default rules (scale up: 0 s window, Max of 4 Pods / 100 Percent per 15 s;
scale down: the controller's --horizontal-pod-autoscaler-downscale-stabilization window (300 s), Max of
100 Percent per 15 s). When `behavior` is absent it stays absent: the controller then takes its
older path (a 300 s scale-down window and a scale-up limit of max(2 x current, 4) per sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from inferline.autoscale.quantity import QuantityError, format_milli, parse_milli

__all__ = [
    "Behavior",
    "HPASpec",
    "MetricSourceType",
    "MetricSpec",
    "MetricTargetType",
    "PolicyType",
    "ScalingPolicy",
    "ScalingRules",
    "SelectPolicy",
    "SpecError",
    "default_scale_down_rules",
    "default_scale_up_rules",
    "parse_behavior",
    "parse_hpa",
]

MAX_STABILIZATION_WINDOW_S = 3600  # API validation: 0..3600
MAX_POLICY_PERIOD_S = 1800  # API validation: 1..1800


class SpecError(ValueError):
    """An HPA spec the API server would reject (or the simulator cannot model); the message names the field."""


class MetricSourceType(StrEnum):
    PODS = "Pods"
    OBJECT = "Object"
    EXTERNAL = "External"
    RESOURCE = "Resource"
    CONTAINER_RESOURCE = "ContainerResource"


class MetricTargetType(StrEnum):
    VALUE = "Value"
    AVERAGE_VALUE = "AverageValue"
    UTILIZATION = "Utilization"


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One entry of spec.metrics. `target` is in milli-units for Value/AverageValue, a percentage for Utilization."""

    type: MetricSourceType
    name: str
    target_type: MetricTargetType
    target: int
    container: str = ""  # ContainerResource only
    described_object: str = ""  # Object only: "Kind/name"

    @property
    def label(self) -> str:
        t = f"{self.target}%" if self.target_type is MetricTargetType.UTILIZATION else format_milli(self.target)
        return f"{self.type.value} {self.name} {self.target_type.value}={t}"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_s: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """One direction of `behavior`. A None window means "the controller's default" (scale down only)."""

    stabilization_window_s: int | None
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float | None = None  # behavior.<dir>.tolerance (HPAConfigurableTolerance)

    @property
    def longest_period_s(self) -> int:
        return max((p.period_s for p in self.policies), default=0)


def default_scale_up_rules() -> ScalingRules:
    return ScalingRules(
        stabilization_window_s=0,
        select_policy=SelectPolicy.MAX,
        policies=(ScalingPolicy(PolicyType.PODS, 4, 15), ScalingPolicy(PolicyType.PERCENT, 100, 15)),
    )


def default_scale_down_rules() -> ScalingRules:
    return ScalingRules(
        stabilization_window_s=None,
        select_policy=SelectPolicy.MAX,
        policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15),),
    )


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: ScalingRules = field(default_factory=default_scale_up_rules)
    scale_down: ScalingRules = field(default_factory=default_scale_down_rules)


@dataclass(frozen=True, slots=True)
class HPASpec:
    """spec of one HorizontalPodAutoscaler after API defaulting."""

    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior | None = None
    name: str = "hpa"

    def __post_init__(self) -> None:
        if self.max_replicas < 1:
            raise SpecError(f"maxReplicas must be >= 1; got {self.max_replicas}")
        if self.min_replicas < 0:
            raise SpecError(f"minReplicas must be >= 0; got {self.min_replicas}")
        if self.min_replicas > self.max_replicas:
            raise SpecError(f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})")
        if not self.metrics:
            raise SpecError("spec.metrics is empty: give at least one metric")
        if self.min_replicas == 0 and not any(
            m.type in (MetricSourceType.OBJECT, MetricSourceType.EXTERNAL) for m in self.metrics
        ):
            raise SpecError("minReplicas 0 needs at least one Object or External metric (HPAScaleToZero)")


# -- parsing the YAML/JSON form -----------------------------------------------------------------------------


def parse_hpa(doc: dict[str, Any]) -> HPASpec:
    """An `autoscaling/v2` HorizontalPodAutoscaler manifest (or just its `spec`) -> HPASpec, defaulted."""
    if not isinstance(doc, dict):
        raise SpecError("the HPA manifest must be a mapping")
    kind = doc.get("kind")
    if kind is not None and kind != "HorizontalPodAutoscaler":
        raise SpecError(f"kind must be HorizontalPodAutoscaler; got {kind!r}")
    api = doc.get("apiVersion")
    if api is not None and api != "autoscaling/v2":
        raise SpecError(f"apiVersion must be autoscaling/v2 (the form the simulator models); got {api!r}")
    spec = doc.get("spec", doc if kind is None else None)
    if not isinstance(spec, dict):
        raise SpecError("spec: missing or not a mapping")
    name = str((doc.get("metadata") or {}).get("name", "hpa")) if isinstance(doc.get("metadata"), dict) else "hpa"
    min_r = _int(spec.get("minReplicas", 1), "spec.minReplicas")
    if "maxReplicas" not in spec:
        raise SpecError("spec.maxReplicas: required")
    max_r = _int(spec["maxReplicas"], "spec.maxReplicas")
    raw_metrics = spec.get("metrics")
    if raw_metrics is None:
        raise SpecError("spec.metrics: required (the API default would be CPU, which the simulator has no model of)")
    if not isinstance(raw_metrics, list):
        raise SpecError("spec.metrics must be a list")
    metrics = tuple(_metric(m, f"spec.metrics[{i}]") for i, m in enumerate(raw_metrics))
    behavior = None
    if spec.get("behavior") is not None:
        behavior = parse_behavior(spec["behavior"], "spec.behavior")
    return HPASpec(min_r, max_r, metrics, behavior, name)


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{where}: must be an integer; got {v!r}")
    return v


def _metric(m: Any, where: str) -> MetricSpec:
    if not isinstance(m, dict):
        raise SpecError(f"{where}: must be a mapping")
    try:
        type_ = MetricSourceType(str(m.get("type")))
    except ValueError:
        known = ", ".join(t.value for t in MetricSourceType)
        raise SpecError(f"{where}.type: must be one of {known}; got {m.get('type')!r}") from None
    key = type_.value[0].lower() + type_.value[1:]  # Pods -> pods, ContainerResource -> containerResource
    body = m.get(key)
    if not isinstance(body, dict):
        raise SpecError(f"{where}.{key}: required for type {type_.value}")
    if type_ in (MetricSourceType.RESOURCE, MetricSourceType.CONTAINER_RESOURCE):
        name = body.get("name")
    else:
        metric = body.get("metric")
        if not isinstance(metric, dict):
            raise SpecError(f"{where}.{key}.metric: required")
        name = metric.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{where}.{key}: metric name required")
    target = body.get("target")
    if not isinstance(target, dict):
        raise SpecError(f"{where}.{key}.target: required")
    try:
        ttype = MetricTargetType(str(target.get("type")))
    except ValueError:
        raise SpecError(
            f"{where}.{key}.target.type: must be Value, AverageValue or Utilization; got {target.get('type')!r}"
        ) from None
    allowed = {
        MetricSourceType.PODS: {MetricTargetType.AVERAGE_VALUE},
        MetricSourceType.OBJECT: {MetricTargetType.VALUE, MetricTargetType.AVERAGE_VALUE},
        MetricSourceType.EXTERNAL: {MetricTargetType.VALUE, MetricTargetType.AVERAGE_VALUE},
        MetricSourceType.RESOURCE: {MetricTargetType.UTILIZATION, MetricTargetType.AVERAGE_VALUE},
        MetricSourceType.CONTAINER_RESOURCE: {MetricTargetType.UTILIZATION, MetricTargetType.AVERAGE_VALUE},
    }[type_]
    if ttype not in allowed:
        ok = " or ".join(sorted(a.value for a in allowed))
        raise SpecError(f"{where}.{key}.target.type: a {type_.value} metric takes {ok}; got {ttype.value}")
    field_name = {"Value": "value", "AverageValue": "averageValue", "Utilization": "averageUtilization"}[ttype]
    if field_name not in target:
        raise SpecError(f"{where}.{key}.target.{field_name}: required for target type {ttype.value}")
    if ttype is MetricTargetType.UTILIZATION:
        value = _int(target[field_name], f"{where}.{key}.target.averageUtilization")
        if value <= 0:
            raise SpecError(f"{where}.{key}.target.averageUtilization: must be > 0; got {value}")
    else:
        try:
            value = parse_milli(target[field_name])
        except QuantityError as exc:
            raise SpecError(f"{where}.{key}.target.{field_name}: {exc}") from None
        if value <= 0:
            raise SpecError(f"{where}.{key}.target.{field_name}: must be > 0; got {target[field_name]!r}")
    described = ""
    if type_ is MetricSourceType.OBJECT:
        obj = body.get("describedObject") or {}
        described = f"{obj.get('kind', '?')}/{obj.get('name', '?')}" if isinstance(obj, dict) else ""
    return MetricSpec(type_, name, ttype, value, str(body.get("container", "")), described)


def parse_behavior(b: Any, where: str = "behavior") -> Behavior:
    if not isinstance(b, dict):
        raise SpecError(f"{where}: must be a mapping")
    up = _rules(b.get("scaleUp"), default_scale_up_rules(), f"{where}.scaleUp")
    down = _rules(b.get("scaleDown"), default_scale_down_rules(), f"{where}.scaleDown")
    return Behavior(up, down)


def _rules(r: Any, default: ScalingRules, where: str) -> ScalingRules:
    """copyHPAScalingRules: every field set in R replaces the default's."""
    if r is None:
        return default
    if not isinstance(r, dict):
        raise SpecError(f"{where}: must be a mapping")
    window = default.stabilization_window_s
    if r.get("stabilizationWindowSeconds") is not None:
        window = _int(r["stabilizationWindowSeconds"], f"{where}.stabilizationWindowSeconds")
        if not 0 <= window <= MAX_STABILIZATION_WINDOW_S:
            raise SpecError(f"{where}.stabilizationWindowSeconds: must be 0..3600; got {window}")
    select = default.select_policy
    if r.get("selectPolicy") is not None:
        try:
            select = SelectPolicy(r["selectPolicy"])
        except ValueError:
            raise SpecError(f"{where}.selectPolicy: must be Max, Min or Disabled; got {r['selectPolicy']!r}") from None
    policies = default.policies
    if r.get("policies") is not None:
        if not isinstance(r["policies"], list) or not r["policies"]:
            raise SpecError(f"{where}.policies: must be a non-empty list")
        policies = tuple(_policy(p, f"{where}.policies[{i}]") for i, p in enumerate(r["policies"]))
    tolerance = default.tolerance
    if r.get("tolerance") is not None:
        try:
            tolerance = parse_milli(r["tolerance"]) / 1000.0
        except QuantityError as exc:
            raise SpecError(f"{where}.tolerance: {exc}") from None
        if tolerance < 0:
            raise SpecError(f"{where}.tolerance: must be >= 0; got {r['tolerance']!r}")
    return ScalingRules(window, select, policies, tolerance)


def _policy(p: Any, where: str) -> ScalingPolicy:
    if not isinstance(p, dict):
        raise SpecError(f"{where}: must be a mapping")
    try:
        type_ = PolicyType(str(p.get("type")))
    except ValueError:
        raise SpecError(f"{where}.type: must be Pods or Percent; got {p.get('type')!r}") from None
    value = _int(p.get("value"), f"{where}.value")
    if value <= 0:
        raise SpecError(f"{where}.value: must be > 0; got {value}")
    period = _int(p.get("periodSeconds"), f"{where}.periodSeconds")
    if not 0 < period <= MAX_POLICY_PERIOD_S:
        raise SpecError(f"{where}.periodSeconds: must be 1..1800; got {period}")
    return ScalingPolicy(type_, value, period)
