"""The HorizontalPodAutoscaler controller as Kubernetes v1.34 runs it, on an injected clock.

`HorizontalController.reconcile(now_s, target, metrics)` is one pass of reconcileAutoscaler
(pkg/controller/podautoscaler/horizontal.go) for one HPA: read every metric, take the largest
proposal, then normalise it — with `behavior`: stabilise (highest recommendation of the scale-down
window, lowest of the scale-up window) and cap by the scaling policies against the scale events of
each policy's period; without `behavior`: the 300 s scale-down window and at most max(2 x current, 4).
The controller keeps what the Go controller keeps between passes: the recommendations and the
scale-up / scale-down events, including the "outdated" slot reuse.

Nothing here reads a clock or a cluster. A caller supplies the pods (`ScaleTarget`) and a
`MetricsClient`; the simulator passes simulated ones, a live controller loop can pass Prometheus
queries. Comparisons of times keep Go's strictness (`After` is >, `Before` is <).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Protocol

from inferline.autoscale import K8S_VERSION
from inferline.autoscale.replica import (
    MetricUnavailable,
    PodInfo,
    PodMetric,
    Tolerances,
    external_per_pod_replicas,
    external_replicas,
    object_per_pod_replicas,
    object_replicas,
    plain_metric_replicas,
    resource_replicas,
)
from inferline.autoscale.spec import (
    HPASpec,
    MetricSourceType,
    MetricSpec,
    MetricTargetType,
    PolicyType,
    ScalingRules,
    SelectPolicy,
)

__all__ = [
    "K8S_VERSION",
    "ControllerConfig",
    "Decision",
    "HorizontalController",
    "MetricsClient",
    "ScaleTarget",
    "calculate_scale_down_limit",
    "calculate_scale_up_limit",
    "replicas_change_per_period",
]

log = logging.getLogger(__name__)

SCALE_UP_LIMIT_FACTOR = 2.0  # behaviour-less path: at most double ...
SCALE_UP_LIMIT_MINIMUM = 4.0  # ... or 4, whichever is more, per pass


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """kube-controller-manager flags of the HPA controller (their defaults)."""

    sync_period_s: float = 15.0  # --horizontal-pod-autoscaler-sync-period
    tolerance: float = 0.1  # --horizontal-pod-autoscaler-tolerance
    downscale_stabilization_s: float = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization
    cpu_initialization_period_s: float = 300.0  # --horizontal-pod-autoscaler-cpu-initialization-period
    initial_readiness_delay_s: float = 30.0  # --horizontal-pod-autoscaler-initial-readiness-delay
    configurable_tolerance: bool = True  # feature gate HPAConfigurableTolerance (behavior.*.tolerance)


@dataclass(slots=True)
class ScaleTarget:
    """The scale subresource and pods of the target: spec.replicas, status.replicas, the selected pods."""

    spec_replicas: int
    status_replicas: int
    pods: list[PodInfo]


class MetricsClient(Protocol):
    """Where the HPA reads metrics (metrics.k8s.io, custom.metrics.k8s.io, external.metrics.k8s.io).

    Each method raises MetricUnavailable when the metric cannot be read.
    """

    def pod_metrics(self, metric: MetricSpec) -> dict[str, PodMetric]: ...
    def object_metric(self, metric: MetricSpec) -> int: ...
    def external_metric(self, metric: MetricSpec) -> list[int]: ...


@dataclass(slots=True)
class _Rec:
    recommendation: int
    timestamp_s: float


@dataclass(slots=True)
class _Event:
    replica_change: int  # absolute value
    timestamp_s: float
    outdated: bool = False


@dataclass(slots=True)
class Decision:
    """What one pass decided. `desired` is what the scale subresource is set to (== current: no change)."""

    time_s: float
    current: int
    desired: int
    metric_desired: int  # the largest proposal before normalisation; -1 when no metric was usable
    metric: str = ""  # the metric that gave metric_desired
    reason: str = ""
    limited: str = ""  # ScalingLimited reason: DesiredWithinRange, ScaleUpLimit, TooManyReplicas, ...
    proposals: dict[str, int] = field(default_factory=dict)  # metric label -> proposal
    usage: dict[str, int] = field(default_factory=dict)  # metric label -> current value (milli, or %)
    errors: list[str] = field(default_factory=list)

    @property
    def rescaled(self) -> bool:
        return self.desired != self.current


class HorizontalController:
    """One HPA's controller state and its reconcile pass."""

    def __init__(self, spec: HPASpec, config: ControllerConfig = ControllerConfig()) -> None:
        self.spec = spec
        self.config = config
        self.recommendations: list[_Rec] = []
        self.scale_up_events: list[_Event] = []
        self.scale_down_events: list[_Event] = []
        self.initialized = False

    # -- tolerances ------------------------------------------------------------------------------------------

    def tolerances(self) -> Tolerances:
        """tolerancesForHpa: the cluster-wide tolerance, replaced per direction by behavior.*.tolerance."""
        t = Tolerances(self.config.tolerance, self.config.tolerance)
        b = self.spec.behavior
        if b is None or not self.config.configurable_tolerance:
            return t
        down = b.scale_down.tolerance if b.scale_down.tolerance is not None else t.scale_down
        up = b.scale_up.tolerance if b.scale_up.tolerance is not None else t.scale_up
        return Tolerances(down, up)

    # -- one pass ----------------------------------------------------------------------------------------------

    def reconcile(self, now_s: float, target: ScaleTarget, metrics: MetricsClient) -> Decision:
        """reconcileAutoscaler: the new spec.replicas for the target (unchanged when no scaling is due)."""
        current = target.spec_replicas
        if not self.initialized:  # recordInitialRecommendation
            self.recommendations = [_Rec(current, now_s)]
            self.initialized = True
        spec = self.spec
        minimum = spec.min_replicas
        d = Decision(now_s, current, current, -1)
        if current == 0 and minimum != 0:
            d.reason = "ScalingDisabled: the target's replica count is zero"
            return d
        if current > spec.max_replicas:
            d.desired, d.reason = spec.max_replicas, "Current number of replicas above Spec.MaxReplicas"
        elif current < minimum:
            d.desired, d.reason = minimum, "Current number of replicas below Spec.MinReplicas"
        else:
            proposal = self._replicas_for_metrics(now_s, target, metrics, d)
            if proposal == -1:
                d.reason = "FailedComputeMetricsReplicas: " + "; ".join(d.errors)
                return d
            d.metric_desired = proposal
            desired = max(0, proposal)
            if desired > current:
                d.reason = f"{d.metric} above target"
            elif desired < current:
                d.reason = "All metrics below target"
            if spec.behavior is None:
                d.desired, d.limited = self._normalize(now_s, current, desired, minimum)
            else:
                d.desired, d.limited = self._normalize_with_behaviors(now_s, current, desired, minimum)
        if d.desired != current:
            self._store_scale_event(now_s, current, d.desired)
        return d

    def _replicas_for_metrics(self, now_s: float, target: ScaleTarget, client: MetricsClient, d: Decision) -> int:
        """computeReplicasForMetrics: the largest proposal; -1 if every metric failed, or if some failed and
        the rest would scale down (never scale down on partial information)."""
        replicas = 0
        invalid = 0
        for m in self.spec.metrics:
            try:
                proposal, usage = self._replicas_for_metric(now_s, m, target, client)
            except MetricUnavailable as exc:
                invalid += 1
                d.errors.append(f"{m.label}: {exc}")
                continue
            d.proposals[m.label] = proposal
            d.usage[m.label] = usage
            if replicas == 0 or proposal > replicas:
                replicas, d.metric = proposal, m.label
        if invalid >= len(self.spec.metrics) or (invalid > 0 and replicas < target.spec_replicas):
            return -1
        return replicas

    def _replicas_for_metric(
        self, now_s: float, m: MetricSpec, target: ScaleTarget, client: MetricsClient
    ) -> tuple[int, int]:
        tol = self.tolerances()
        cfg = self.config
        spec_r, status_r = target.spec_replicas, target.status_replicas
        if m.type is MetricSourceType.PODS:
            return plain_metric_replicas(client.pod_metrics(m), target.pods, spec_r, m.target, tol)
        if m.type in (MetricSourceType.RESOURCE, MetricSourceType.CONTAINER_RESOURCE):
            samples = client.pod_metrics(m)
            cpu = m.name == "cpu"
            windows = {
                "now_s": now_s,
                "cpu_initialization_period_s": cfg.cpu_initialization_period_s,
                "initial_readiness_delay_s": cfg.initial_readiness_delay_s,
            }
            if m.target_type is MetricTargetType.AVERAGE_VALUE:
                return plain_metric_replicas(samples, target.pods, spec_r, m.target, tol, cpu=cpu, **windows)
            replicas, utilization, _ = resource_replicas(
                samples, target.pods, spec_r, m.target, tol, cpu=cpu, **windows
            )
            return replicas, utilization
        if m.type is MetricSourceType.OBJECT:
            usage = client.object_metric(m)
            if m.target_type is MetricTargetType.VALUE:
                return object_replicas(spec_r, usage, m.target, tol, target.pods), usage
            return object_per_pod_replicas(status_r, usage, m.target, tol)
        values = client.external_metric(m)
        if m.target_type is MetricTargetType.AVERAGE_VALUE:
            return external_per_pod_replicas(status_r, values, m.target, tol)
        return external_replicas(spec_r, values, m.target, tol, target.pods)

    # -- without behavior --------------------------------------------------------------------------------------

    def _normalize(self, now_s: float, current: int, desired: int, minimum: int) -> tuple[int, str]:
        stabilized = self._stabilize(now_s, desired)
        return convert_desired_replicas_with_rules(current, stabilized, minimum, self.spec.max_replicas)

    def _stabilize(self, now_s: float, desired: int) -> int:
        """stabilizeRecommendation: the highest recommendation of the downscale window (this one included)."""
        cutoff = now_s - self.config.downscale_stabilization_s
        best = desired
        old_index = -1
        for i, rec in enumerate(self.recommendations):
            if rec.timestamp_s < cutoff:
                old_index = i
            elif rec.recommendation > best:
                best = rec.recommendation
        if old_index >= 0:
            self.recommendations[old_index] = _Rec(desired, now_s)
        else:
            self.recommendations.append(_Rec(desired, now_s))
        return best

    # -- with behavior -----------------------------------------------------------------------------------------

    def _normalize_with_behaviors(self, now_s: float, current: int, desired: int, minimum: int) -> tuple[int, str]:
        behavior = self.spec.behavior
        assert behavior is not None
        up, down = behavior.scale_up, behavior.scale_down
        down_window = (
            down.stabilization_window_s
            if down.stabilization_window_s is not None
            else int(self.config.downscale_stabilization_s)  # maybeInitScaleDownStabilizationWindow
        )
        up_window = up.stabilization_window_s or 0
        stabilized = self._stabilize_with_behaviors(now_s, current, desired, up_window, down_window)
        return self._limit_by_rate(now_s, current, stabilized, minimum, up, down)

    def _stabilize_with_behaviors(
        self, now_s: float, current: int, desired: int, up_window_s: float, down_window_s: float
    ) -> int:
        """stabilizeRecommendationWithBehaviors: clamp the current count between the lowest recommendation of
        the scale-up window and the highest of the scale-down window (both include this one)."""
        up_cutoff = now_s - up_window_s
        down_cutoff = now_s - down_window_s
        up_rec = down_rec = desired
        old_index = -1
        for i, rec in enumerate(self.recommendations):
            if rec.timestamp_s > up_cutoff:
                up_rec = min(rec.recommendation, up_rec)
            if rec.timestamp_s > down_cutoff:
                down_rec = max(rec.recommendation, down_rec)
            if rec.timestamp_s < up_cutoff and rec.timestamp_s < down_cutoff:
                old_index = i
        recommendation = current
        if recommendation < up_rec:
            recommendation = up_rec
        if recommendation > down_rec:
            recommendation = down_rec
        if old_index >= 0:
            self.recommendations[old_index] = _Rec(desired, now_s)
        else:
            self.recommendations.append(_Rec(desired, now_s))
        return recommendation

    def _limit_by_rate(
        self, now_s: float, current: int, desired: int, minimum: int, up: ScalingRules, down: ScalingRules
    ) -> tuple[int, str]:
        """convertDesiredReplicasWithBehaviorRate."""
        maximum = self.spec.max_replicas
        if desired > current:
            limit = calculate_scale_up_limit(now_s, current, self.scale_up_events, self.scale_down_events, up)
            limit = max(limit, current)  # events of a recent burst must not force a scale-down
            if maximum > limit:
                allowed, reason = limit, "ScaleUpLimit"
            else:
                allowed, reason = maximum, "TooManyReplicas"
            if desired > allowed:
                return allowed, reason
        elif desired < current:
            limit = calculate_scale_down_limit(now_s, current, self.scale_up_events, self.scale_down_events, down)
            limit = min(limit, current)
            if minimum < limit:
                allowed, reason = limit, "ScaleDownLimit"
            else:
                allowed, reason = minimum, "TooFewReplicas"
            if desired < allowed:
                return allowed, reason
        return desired, "DesiredWithinRange"

    def _store_scale_event(self, now_s: float, prev: int, new: int) -> None:
        """storeScaleEvent: kept only with `behavior`; an event older than the direction's longest policy
        period is marked outdated and its slot reused (the last such slot)."""
        behavior = self.spec.behavior
        if behavior is None:
            return
        if new > prev:
            events, rules, change = self.scale_up_events, behavior.scale_up, new - prev
        else:
            events, rules, change = self.scale_down_events, behavior.scale_down, prev - new
        cutoff = now_s - rules.longest_period_s
        old_index = -1
        for i, e in enumerate(events):
            if e.timestamp_s < cutoff:
                e.outdated = True
            if e.outdated:
                old_index = i
        event = _Event(change, now_s)
        if old_index >= 0:
            events[old_index] = event
        else:
            events.append(event)


def convert_desired_replicas_with_rules(current: int, desired: int, minimum: int, maximum: int) -> tuple[int, str]:
    """convertDesiredReplicasWithRules (no behavior): clamp to min, to max, and to max(2 x current, 4)."""
    scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if maximum > scale_up_limit:
        allowed_max, reason = scale_up_limit, "ScaleUpLimit"
    else:
        allowed_max, reason = maximum, "TooManyReplicas"
    if desired < minimum:
        return minimum, "TooFewReplicas"
    if desired > allowed_max:
        return allowed_max, reason
    return desired, "DesiredWithinRange"


def replicas_change_per_period(now_s: float, period_s: int, events: list[_Event]) -> int:
    """getReplicasChangePerPeriod: replicas changed by events strictly newer than now - period."""
    cutoff = now_s - period_s
    return sum(e.replica_change for e in events if e.timestamp_s > cutoff)


def calculate_scale_up_limit(
    now_s: float, current: int, up_events: list[_Event], down_events: list[_Event], rules: ScalingRules
) -> int:
    """calculateScaleUpLimitWithScalingRules: each policy allows (replicas at its period's start) + value
    (Pods) or x (1 + value%) rounded up (Percent); Max picks the most permissive, Min the least."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    pick = min if rules.select_policy is SelectPolicy.MIN else max
    result: int | None = None
    for p in rules.policies:
        added = replicas_change_per_period(now_s, p.period_s, up_events)
        deleted = replicas_change_per_period(now_s, p.period_s, down_events)
        start = current - added + deleted
        proposed = start + p.value if p.type is PolicyType.PODS else math.ceil(start * (1 + p.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def calculate_scale_down_limit(
    now_s: float, current: int, up_events: list[_Event], down_events: list[_Event], rules: ScalingRules
) -> int:
    """calculateScaleDownLimitWithBehaviors: (replicas at the period's start) - value (Pods) or x (1 - value%)
    truncated (Percent); Max picks the largest change (lowest count), Min the smallest."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    pick = max if rules.select_policy is SelectPolicy.MIN else min
    result: int | None = None
    for p in rules.policies:
        added = replicas_change_per_period(now_s, p.period_s, up_events)
        deleted = replicas_change_per_period(now_s, p.period_s, down_events)
        start = current - added + deleted
        proposed = start - p.value if p.type is PolicyType.PODS else int(start * (1 - p.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result
