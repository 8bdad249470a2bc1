"""KEDA's ScaledObject with prometheus triggers: the HPA it creates, plus its own activation and cooldown loop.

What KEDA (v2) does, and what this models:
  - it creates an HPA named keda-hpa-<name> with minReplicas max(minReplicaCount, 1), maxReplicas
    maxReplicaCount, one External metric per trigger with target AverageValue = threshold (metricType
    AverageValue, the default) or Value, and `advanced.horizontalPodAutoscalerConfig.behavior` if given;
    that HPA scales between 1 and N like any other (see hpa.py), reading the trigger's query result
    through KEDA's metrics server at each HPA sync (or the value cached at the last poll with
    useCachedMetrics);
  - every pollingInterval the operator evaluates the triggers: a trigger is active while its value is
    above activationThreshold (default 0). At 0 replicas an active trigger scales the target to
    max(minReplicaCount, 1); with minReplicaCount 0, once no trigger has been active for cooldownPeriod
    it scales the target to 0 (cooldownPeriod only applies to that step to zero).
A prometheus trigger's query must return one value; the simulator understands `sum|avg|max|min(METRIC...)`
(optionally over avg_over_time(...[Ns])) or a bare gateway metric, see `sources.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferline.autoscale.hpa import ControllerConfig, Decision, HorizontalController, MetricsClient, ScaleTarget
from inferline.autoscale.quantity import QuantityError, milli_of_float, parse_milli
from inferline.autoscale.replica import MetricUnavailable
from inferline.autoscale.spec import (
    Behavior,
    HPASpec,
    MetricSourceType,
    MetricSpec,
    MetricTargetType,
    SpecError,
    parse_behavior,
)

__all__ = ["KedaController", "KedaSpec", "PrometheusTrigger", "parse_scaled_object"]

DEFAULT_POLLING_INTERVAL_S = 30.0
DEFAULT_COOLDOWN_PERIOD_S = 300.0
DEFAULT_MAX_REPLICA_COUNT = 100


@dataclass(frozen=True, slots=True)
class PrometheusTrigger:
    query: str
    threshold: float
    activation_threshold: float = 0.0
    metric_type: MetricTargetType = MetricTargetType.AVERAGE_VALUE
    use_cached_metrics: bool = False
    name: str = ""  # KEDA names the HPA metric s<i>-prometheus


@dataclass(frozen=True, slots=True)
class KedaSpec:
    triggers: tuple[PrometheusTrigger, ...]
    min_replica_count: int = 0
    max_replica_count: int = DEFAULT_MAX_REPLICA_COUNT
    polling_interval_s: float = DEFAULT_POLLING_INTERVAL_S
    cooldown_period_s: float = DEFAULT_COOLDOWN_PERIOD_S
    initial_cooldown_period_s: float = 0.0
    behavior: Behavior | None = None
    name: str = "scaledobject"

    def __post_init__(self) -> None:
        if not self.triggers:
            raise SpecError("spec.triggers: at least one prometheus trigger is required")
        if self.min_replica_count < 0:
            raise SpecError(f"minReplicaCount must be >= 0; got {self.min_replica_count}")
        if self.min_replica_count > self.max_replica_count:
            raise SpecError(
                f"minReplicaCount ({self.min_replica_count}) is above maxReplicaCount ({self.max_replica_count})"
            )
        if self.polling_interval_s <= 0:
            raise SpecError(f"pollingInterval must be > 0; got {self.polling_interval_s}")

    def hpa_spec(self) -> HPASpec:
        """The HPA that KEDA creates for this ScaledObject."""
        metrics = tuple(
            MetricSpec(
                MetricSourceType.EXTERNAL,
                t.name or f"s{i}-prometheus",
                t.metric_type,
                max(1, parse_milli(_quantity(t.threshold))),
            )
            for i, t in enumerate(self.triggers)
        )
        return HPASpec(
            max(self.min_replica_count, 1), self.max_replica_count, metrics, self.behavior, f"keda-hpa-{self.name}"
        )


def _quantity(x: float) -> str:
    return repr(float(x))


class KedaController:
    """KEDA's operator loop for one ScaledObject wrapped around the HPA it owns."""

    def __init__(self, spec: KedaSpec, config: ControllerConfig = ControllerConfig()) -> None:
        self.spec = spec
        self.hpa = HorizontalController(spec.hpa_spec(), config)
        self.last_active_s: float | None = None
        self.created_s: float | None = None
        self.active = False
        self.cached: dict[str, list[int]] = {}  # trigger metric name -> values at the last poll

    def metric_names(self) -> list[str]:
        return [m.name for m in self.hpa.spec.metrics]

    def poll(self, now_s: float, current_replicas: int, values: Mapping[str, float | None]) -> int | None:
        """One pollingInterval tick. VALUES: trigger metric name -> query result (None: query failed).

        Returns the replica count KEDA sets itself (activation from 0, or the step to 0), or None.
        """
        if self.created_s is None:
            self.created_s = now_s
        active = False
        for t, name in zip(self.spec.triggers, self.metric_names(), strict=True):
            v = values.get(name)
            if v is None:
                continue
            self.cached[name] = [milli_of_float(v)]
            if v > t.activation_threshold:
                active = True
        self.active = active
        if active:
            self.last_active_s = now_s
            if current_replicas == 0:
                return max(self.spec.min_replica_count, 1)
            return None
        if current_replicas > 0 and self.spec.min_replica_count == 0:
            since = self.last_active_s if self.last_active_s is not None else self.created_s
            cooldown = self.spec.cooldown_period_s
            if self.last_active_s is None:
                cooldown = max(cooldown, self.spec.initial_cooldown_period_s)
            if now_s - since >= cooldown:
                return 0
        return None

    def reconcile(self, now_s: float, target: ScaleTarget, metrics: MetricsClient) -> Decision:
        """The owned HPA's pass (triggers with useCachedMetrics read the value of the last poll)."""
        return self.hpa.reconcile(now_s, target, _Cached(self, metrics))


class _Cached:
    """The KEDA metrics server: live query per HPA request, or the last poll's value (useCachedMetrics)."""

    def __init__(self, keda: KedaController, live: MetricsClient) -> None:
        self.keda, self.live = keda, live

    def pod_metrics(self, metric: MetricSpec) -> Any:
        return self.live.pod_metrics(metric)

    def object_metric(self, metric: MetricSpec) -> int:
        return self.live.object_metric(metric)

    def external_metric(self, metric: MetricSpec) -> list[int]:
        names = self.keda.metric_names()
        trigger = self.keda.spec.triggers[names.index(metric.name)]
        if trigger.use_cached_metrics:
            if metric.name not in self.keda.cached:
                raise MetricUnavailable("no cached value yet")
            return self.keda.cached[metric.name]
        return self.live.external_metric(metric)


def parse_scaled_object(doc: dict[str, Any]) -> KedaSpec:
    """A keda.sh/v1alpha1 ScaledObject manifest -> KedaSpec (prometheus triggers only)."""
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise SpecError("ScaledObject spec: missing or not a mapping")
    name = str((doc.get("metadata") or {}).get("name", "scaledobject"))
    raw = spec.get("triggers")
    if not isinstance(raw, list) or not raw:
        raise SpecError("ScaledObject spec.triggers: a non-empty list is required")
    triggers = []
    for i, t in enumerate(raw):
        where = f"spec.triggers[{i}]"
        if not isinstance(t, dict) or t.get("type") != "prometheus":
            got = t.get("type") if isinstance(t, dict) else t
            raise SpecError(f"{where}.type: only prometheus triggers are simulated; got {got!r}")
        meta = t.get("metadata")
        if not isinstance(meta, dict):
            raise SpecError(f"{where}.metadata: required")
        for key in ("query", "threshold"):
            if key not in meta:
                raise SpecError(f"{where}.metadata.{key}: required")
        try:
            mtype = MetricTargetType(str(t.get("metricType", "AverageValue")))
        except ValueError:
            raise SpecError(f"{where}.metricType: AverageValue or Value; got {t.get('metricType')!r}") from None
        if mtype is MetricTargetType.UTILIZATION:
            raise SpecError(f"{where}.metricType: Utilization is for cpu/memory triggers, not prometheus")
        triggers.append(
            PrometheusTrigger(
                query=str(meta["query"]),
                threshold=_float(meta["threshold"], f"{where}.metadata.threshold"),
                activation_threshold=_float(
                    meta.get("activationThreshold", 0), f"{where}.metadata.activationThreshold"
                ),
                metric_type=mtype,
                use_cached_metrics=bool(t.get("useCachedMetrics", False)),
                name=f"s{i}-prometheus",
            )
        )
    behavior = None
    advanced = spec.get("advanced")
    if isinstance(advanced, dict):
        hpa_cfg = advanced.get("horizontalPodAutoscalerConfig")
        if isinstance(hpa_cfg, dict) and hpa_cfg.get("behavior") is not None:
            behavior = parse_behavior(hpa_cfg["behavior"], "spec.advanced.horizontalPodAutoscalerConfig.behavior")
    return KedaSpec(
        tuple(triggers),
        min_replica_count=_int(spec.get("minReplicaCount", 0), "spec.minReplicaCount"),
        max_replica_count=_int(spec.get("maxReplicaCount", DEFAULT_MAX_REPLICA_COUNT), "spec.maxReplicaCount"),
        polling_interval_s=_float(spec.get("pollingInterval", DEFAULT_POLLING_INTERVAL_S), "spec.pollingInterval"),
        cooldown_period_s=_float(spec.get("cooldownPeriod", DEFAULT_COOLDOWN_PERIOD_S), "spec.cooldownPeriod"),
        initial_cooldown_period_s=_float(spec.get("initialCooldownPeriod", 0), "spec.initialCooldownPeriod"),
        behavior=behavior,
        name=name,
    )


def _float(v: Any, where: str) -> float:
    """KEDA's thresholds are strings in YAML ("5", "0.75") or numbers."""
    if isinstance(v, bool):
        raise SpecError(f"{where}: must be a number; got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        try:
            return parse_milli(str(v)) / 1000.0
        except QuantityError:
            raise SpecError(f"{where}: must be a number; got {v!r}") from None


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{where}: must be an integer; got {v!r}")
    return v
