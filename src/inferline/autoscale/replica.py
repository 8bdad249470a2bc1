"""The HPA's replica calculator: pure functions, line for line with Kubernetes' replica_calculator.go.

Modelled version: Kubernetes v1.34 (pkg/controller/podautoscaler/replica_calculator.go and
metrics/utilization.go, with per-direction `Tolerances` from KEP-4951). Values are integer
milli-units, as in the Go code, so truncations happen where Kubernetes truncates.

How pods are counted (groupPods):
  - a pod being deleted, or Failed          -> ignored
  - a Pending pod                           -> unready (its metric is dropped)
  - a pod with no metric sample             -> missing
  - CPU only: a Running pod that is not Ready, or whose sample predates its readiness, within the
    CPU initialization period (or never ready within the initial-readiness delay) -> unready
  - otherwise (and for EVERY non-CPU metric, Ready or not) -> ready, its sample counts.
Missing pods count as the target (100% of request for CPU) when the ratio says scale down and as 0 when it
says scale up; unready pods count as 0 only on a scale up. If either substitution flips the direction, or
lands inside the tolerance, the count stays put.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "MetricUnavailable",
    "PodInfo",
    "PodMetric",
    "PodPhase",
    "Tolerances",
    "external_per_pod_replicas",
    "external_replicas",
    "group_pods",
    "metric_usage_ratio",
    "object_per_pod_replicas",
    "object_replicas",
    "plain_metric_replicas",
    "ready_pods_count",
    "resource_replicas",
    "resource_utilization_ratio",
]

_MAX_INT32 = 2**31 - 1


class MetricUnavailable(RuntimeError):
    """The metric could not be read, or no pod has a usable sample (the HPA reports the metric as invalid)."""


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the HPA reads of one pod. Times are seconds on the caller's clock."""

    name: str
    phase: PodPhase = PodPhase.RUNNING
    ready: bool = True  # PodReady condition status
    deleting: bool = False  # DeletionTimestamp set
    start_s: float | None = 0.0  # Status.StartTime (None: not started)
    ready_transition_s: float | None = 0.0  # PodReady condition LastTransitionTime (None: no condition)
    request_milli: int = 1000  # resource request of the scaled resource (Resource metrics only)


@dataclass(frozen=True, slots=True)
class PodMetric:
    value: int  # milli-units
    timestamp_s: float = 0.0
    window_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Tolerances:
    """No scaling while 1 - scale_down <= ratio <= 1 + scale_up."""

    scale_down: float = 0.1
    scale_up: float = 0.1

    def is_within(self, ratio: float) -> bool:
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


def group_pods(
    pods: list[PodInfo],
    metrics: dict[str, PodMetric],
    *,
    cpu: bool = False,
    now_s: float = 0.0,
    cpu_initialization_period_s: float = 300.0,
    initial_readiness_delay_s: float = 30.0,
) -> tuple[int, set[str], set[str], set[str]]:
    """(ready count, unready, missing, ignored) as groupPods does."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase is PodPhase.FAILED:
            ignored.add(pod.name)
            continue
        if pod.phase is PodPhase.PENDING:
            unready.add(pod.name)
            continue
        metric = metrics.get(pod.name)
        if metric is None:
            missing.add(pod.name)
            continue
        if cpu:
            if pod.ready_transition_s is None or pod.start_s is None:
                is_unready = True
            elif pod.start_s + cpu_initialization_period_s > now_s:
                # Still initialising: ignore the sample if unready, or if it was taken before one full
                # metric window had passed since the last readiness change.
                is_unready = (not pod.ready) or metric.timestamp_s < pod.ready_transition_s + metric.window_s
            else:
                # Ignore it only if it is unready and has never been ready since start-up.
                is_unready = (not pod.ready) and pod.start_s + initial_readiness_delay_s > pod.ready_transition_s
            if is_unready:
                unready.add(pod.name)
                continue
        ready += 1
    return ready, unready, missing, ignored


def metric_usage_ratio(metrics: dict[str, PodMetric], target_milli: int) -> tuple[float, int]:
    """GetMetricUsageRatio: (average / target, average), the average truncated to whole milli-units."""
    total = sum(m.value for m in metrics.values())
    usage = _div_trunc(total, len(metrics))
    return usage / target_milli, usage


def resource_utilization_ratio(
    metrics: dict[str, PodMetric], requests: dict[str, int], target_utilization: int
) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (ratio, utilization %, raw average), integer percent as in Go."""
    metrics_total = requests_total = entries = 0
    for name, m in metrics.items():
        request = requests.get(name)
        if request is None:
            continue
        metrics_total += m.value
        requests_total += request
        entries += 1
    if requests_total == 0:
        raise MetricUnavailable("no metrics returned matched known pods")
    utilization = _div_trunc(metrics_total * 100, requests_total)
    return utilization / target_utilization, utilization, _div_trunc(metrics_total, entries)


def plain_metric_replicas(
    metrics: dict[str, PodMetric],
    pods: list[PodInfo],
    current_replicas: int,
    target_milli: int,
    tolerances: Tolerances,
    *,
    cpu: bool = False,
    now_s: float = 0.0,
    cpu_initialization_period_s: float = 300.0,
    initial_readiness_delay_s: float = 30.0,
) -> tuple[int, int]:
    """calcPlainMetricReplicas (Pods metrics, Resource AverageValue): (replicas, average usage milli)."""
    if not pods:
        raise MetricUnavailable("no pods returned by selector while calculating replica count")
    metrics = dict(metrics)
    ready, unready, missing, ignored = group_pods(
        pods,
        metrics,
        cpu=cpu,
        now_s=now_s,
        cpu_initialization_period_s=cpu_initialization_period_s,
        initial_readiness_delay_s=initial_readiness_delay_s,
    )
    for name in ignored | unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricUnavailable("did not receive metrics for targeted pods (pods might be unready)")
    ratio, usage = metric_usage_ratio(metrics, target_milli)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if tolerances.is_within(ratio):
            return current_replicas, usage
        return math.ceil(ratio * ready), usage
    if missing:
        if ratio < 1.0:
            for name in missing:  # scale down: a pod without a sample is taken to be exactly at target
                metrics[name] = PodMetric(target_milli)
        elif ratio > 1.0:
            for name in missing:  # scale up: ... and at zero
                metrics[name] = PodMetric(0)
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = PodMetric(0)
    new_ratio, _ = metric_usage_ratio(metrics, target_milli)
    return _rebalanced(current_replicas, ratio, new_ratio, len(metrics), tolerances), usage


def resource_replicas(
    metrics: dict[str, PodMetric],
    pods: list[PodInfo],
    current_replicas: int,
    target_utilization: int,
    tolerances: Tolerances,
    *,
    cpu: bool = True,
    now_s: float = 0.0,
    cpu_initialization_period_s: float = 300.0,
    initial_readiness_delay_s: float = 30.0,
) -> tuple[int, int, int]:
    """GetResourceReplicas (Utilization target): (replicas, utilization %, raw average milli)."""
    if not metrics:
        raise MetricUnavailable("no metrics returned from resource metrics API")
    if not pods:
        raise MetricUnavailable("no pods returned by selector while calculating replica count")
    metrics = dict(metrics)
    ready, unready, missing, ignored = group_pods(
        pods,
        metrics,
        cpu=cpu,
        now_s=now_s,
        cpu_initialization_period_s=cpu_initialization_period_s,
        initial_readiness_delay_s=initial_readiness_delay_s,
    )
    for name in ignored | unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricUnavailable("did not receive metrics for targeted pods (pods might be unready)")
    requests = {p.name: p.request_milli for p in pods}
    ratio, utilization, raw = resource_utilization_ratio(metrics, requests, target_utilization)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if tolerances.is_within(ratio):
            return current_replicas, utilization, raw
        return math.ceil(ratio * ready), utilization, raw
    if missing:
        if ratio < 1.0:
            fallback = max(100, target_utilization)  # targets above 100% fall back to the target itself
            for name in missing:
                metrics[name] = PodMetric(_div_trunc(requests[name] * fallback, 100))
        elif ratio > 1.0:
            for name in missing:
                metrics[name] = PodMetric(0)
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = PodMetric(0)
    new_ratio, _, _ = resource_utilization_ratio(metrics, requests, target_utilization)
    return _rebalanced(current_replicas, ratio, new_ratio, len(metrics), tolerances), utilization, raw


def _rebalanced(current: int, ratio: float, new_ratio: float, counted: int, tolerances: Tolerances) -> int:
    if tolerances.is_within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current  # too small a change, or the substitutions reversed the direction
    new = math.ceil(new_ratio * counted)
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current  # counting more pods would reverse the direction
    return new


def ready_pods_count(pods: list[PodInfo]) -> int:
    """getReadyPodsCount: Running and Ready (deletion is not checked here, as in Go)."""
    if not pods:
        raise MetricUnavailable("no pods returned by selector while calculating replica count")
    return sum(1 for p in pods if p.phase is PodPhase.RUNNING and p.ready)


def _usage_ratio_replicas(current: int, ratio: float, tolerances: Tolerances, pods: list[PodInfo]) -> int:
    """getUsageRatioReplicaCount: from zero, ceil(ratio) (scale from zero); else ratio x ready pods."""
    if current == 0:
        return math.ceil(ratio)
    if tolerances.is_within(ratio):
        return current
    replicas = ratio * ready_pods_count(pods)
    return _MAX_INT32 if replicas > _MAX_INT32 else math.ceil(replicas)


def object_replicas(
    spec_replicas: int, usage_milli: int, target_milli: int, tolerances: Tolerances, pods: list[PodInfo]
) -> int:
    """GetObjectMetricReplicas (Object, Value target)."""
    return _usage_ratio_replicas(spec_replicas, usage_milli / target_milli, tolerances, pods)


def object_per_pod_replicas(
    status_replicas: int, usage_milli: int, target_average_milli: int, tolerances: Tolerances
) -> tuple[int, int]:
    """GetObjectPerPodMetricReplicas (Object, AverageValue target): (replicas, usage per pod milli)."""
    replicas = status_replicas
    ratio = usage_milli / (target_average_milli * replicas) if replicas else math.inf
    if not tolerances.is_within(ratio):
        replicas = math.ceil(usage_milli / target_average_milli)
    per_pod = math.ceil(usage_milli / status_replicas) if status_replicas else usage_milli
    return replicas, per_pod


def external_replicas(
    spec_replicas: int, values_milli: list[int], target_milli: int, tolerances: Tolerances, pods: list[PodInfo]
) -> tuple[int, int]:
    """GetExternalMetricReplicas (External, Value target): the series are summed. (replicas, usage milli)."""
    usage = sum(values_milli)
    return _usage_ratio_replicas(spec_replicas, usage / target_milli, tolerances, pods), usage


def external_per_pod_replicas(
    status_replicas: int, values_milli: list[int], target_average_milli: int, tolerances: Tolerances
) -> tuple[int, int]:
    """GetExternalPerPodMetricReplicas (External, AverageValue target: KEDA's default). (replicas, usage per pod)."""
    usage = sum(values_milli)
    replicas = status_replicas
    ratio = usage / (target_average_milli * replicas) if replicas else math.inf
    if not tolerances.is_within(ratio):
        replicas = min(_MAX_INT32, math.ceil(usage / target_average_milli))
    per_pod = math.ceil(usage / status_replicas) if status_replicas else usage
    return replicas, per_pod


def _div_trunc(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q
