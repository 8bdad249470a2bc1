"""The replica calculator against replica_calculator_test.go (custom, object and external metrics; CPU cases)."""

from __future__ import annotations

from inferline.autoscale.replica import (
    PodInfo,
    PodMetric,
    PodPhase,
    Tolerances,
    external_per_pod_replicas,
    external_replicas,
    object_per_pod_replicas,
    object_replicas,
    plain_metric_replicas,
    resource_replicas,
)

TOL = Tolerances()


def pods(n: int, ready: list[bool] | None = None, phase: list[PodPhase] | None = None) -> list[PodInfo]:
    return [PodInfo(f"p{i}", phase[i] if phase else PodPhase.RUNNING, ready[i] if ready else True) for i in range(n)]


def samples(*levels: int) -> dict[str, PodMetric]:
    return {f"p{i}": PodMetric(v) for i, v in enumerate(levels)}


def test_scale_up_cm() -> None:  # TestReplicaCalcScaleUpCM
    assert plain_metric_replicas(samples(20000, 10000, 30000), pods(3), 3, 15000, TOL) == (4, 20000)


def test_scale_up_cm_ignores_readiness_of_running_pods() -> None:  # TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale
    got = plain_metric_replicas(samples(50000, 10000, 30000), pods(3, [True, True, False]), 3, 15000, TOL)
    assert got == (6, 30000)


def test_scale_up_cm_unready_would_scale_down() -> None:  # TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown
    got = plain_metric_replicas(samples(50000, 15000, 30000), pods(3, [False, True, False]), 3, 15000, TOL)
    assert got == (7, 31666)


def test_object_value() -> None:  # TestReplicaCalcScaleUpCMObject / ...IgnoresUnreadyPods / ToleranceCMObject
    assert object_replicas(3, 20000, 15000, TOL, pods(3)) == 4
    assert object_replicas(3, 50000, 10000, TOL, pods(3, [False, True, False])) == 5
    assert object_replicas(3, 20666, 20000, TOL, pods(3)) == 3
    assert object_replicas(5, 12000, 20000, TOL, pods(5)) == 3  # ScaleDownCMObject


def test_object_average_value() -> None:  # ScaleUpCMPerPodObject / ScaleDownPerPodCMObject / TolerancePerPodCMObject
    assert object_per_pod_replicas(3, 20000, 5000, TOL) == (4, 6667)
    assert object_per_pod_replicas(5, 6000, 2000, TOL) == (3, 1200)
    assert object_per_pod_replicas(4, 20166, 5000, TOL) == (4, 5042)


def test_external_value() -> None:  # ScaleUpCMExternal / ...IgnoresUnreadyPods / ScaleDownCMExternal / Tolerance
    assert external_replicas(1, [8600], 4400, TOL, pods(1)) == (2, 8600)
    assert external_replicas(3, [8600], 4400, TOL, pods(3, [False, True, False])) == (2, 8600)
    assert external_replicas(5, [8600], 14334, TOL, pods(5)) == (3, 8600)
    assert external_replicas(3, [8600], 8888, TOL, pods(3)) == (3, 8600)
    assert external_replicas(0, [8600], 4400, TOL, []) == (2, 8600)  # from zero: ceil(ratio)


def test_external_average_value() -> None:  # ScaleUpPerPodCMExternal / ScaleDownPerPodCMExternal / Tolerance
    assert external_per_pod_replicas(3, [8600], 2150, TOL) == (4, 2867)
    assert external_per_pod_replicas(5, [8600], 2867, TOL) == (3, 1720)
    assert external_per_pod_replicas(3, [8600], 2900, TOL) == (3, 2867)


def test_scale_down_cm_and_tolerance() -> None:  # ScaleDownCM / ToleranceCM
    assert plain_metric_replicas(samples(*[12000] * 5), pods(5), 5, 20000, TOL) == (3, 12000)
    assert plain_metric_replicas(samples(20000, 21000, 21000), pods(3), 3, 20000, TOL) == (3, 20666)


def test_missing_metrics_no_change_at_target() -> None:  # TestPlainMetricReplicaCalcMissingMetricsNoChangeEq
    assert plain_metric_replicas(samples(20000, 19000, 21000), pods(5), 5, 20000, TOL) == (5, 20000)


def test_rolling_update_with_max_surge_cm() -> None:  # TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM
    assert plain_metric_replicas(samples(10000, 10000), pods(3), 2, 17000, TOL) == (2, 10000)


def test_cpu_scale_down_and_tolerance() -> None:  # TestReplicaCalcScaleDown / TestReplicaCalcTolerance
    assert resource_replicas(samples(100, 300, 500, 250, 250), pods(5), 5, 50, TOL, now_s=1e6)[:2] == (3, 28)
    reqs = [900, 1000, 1100]
    ps = [PodInfo(f"p{i}", request_milli=r) for i, r in enumerate(reqs)]
    assert resource_replicas(samples(1010, 1030, 1020), ps, 3, 100, TOL, now_s=1e6)[:2] == (3, 102)


def test_cpu_missing_metrics_count_as_full_request_on_scale_down() -> None:  # TestReplicaCalcMissingMetrics
    assert resource_replicas(samples(400, 95), pods(4), 4, 100, TOL, now_s=1e6)[:2] == (3, 24)


def test_cpu_excludes_unscheduled_pods() -> None:  # TestReplicaCalcScaleDownExcludeUnscheduledPods
    phases = [PodPhase.RUNNING] + [PodPhase.PENDING] * 4
    ps = pods(5, [True, False, False, False, False], phases)
    assert resource_replicas(samples(100), ps, 5, 50, TOL, now_s=1e6)[:2] == (1, 10)


def test_cpu_superfluous_metrics_are_ignored() -> None:  # TestReplicaCalcSuperfluousMetrics
    assert resource_replicas(samples(4000, 9500, 3000, 7000, 3200, 2000), pods(4), 4, 100, TOL, now_s=1e6)[:2] == (
        24,
        587,
    )


def test_cpu_unready_pod_within_initialization_counts_zero_on_scale_up() -> None:
    """A CPU pod started 10 s ago and not Ready is unready: left out, then put at 0 because the others say scale up."""
    ps = [PodInfo("p0", ready=False, start_s=990.0, ready_transition_s=990.0), PodInfo("p1"), PodInfo("p2")]
    # ready pods at 100% of request (ratio 2 vs 50%); with p0 at 0: 2000 x 100 / 3000 = 66% -> 1.32 x 3 -> 4
    assert resource_replicas(samples(100, 1000, 1000), ps, 3, 50, TOL, now_s=1000.0)[0] == 4
    # the same pod long after its start, Ready once then not: its sample counts (1100 / 3 -> 73% -> ceil(4.38) = 5)
    late = [PodInfo("p0", ready=False, start_s=0.0, ready_transition_s=500.0), PodInfo("p1"), PodInfo("p2")]
    assert resource_replicas(samples(100, 1000, 1000), late, 3, 50, TOL, now_s=1000.0)[0] == 5
