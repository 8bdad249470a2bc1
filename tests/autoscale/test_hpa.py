"""The HPA controller against the golden cases of the Kubernetes documentation and of the controller's own
unit tests (horizontal_test.go TestScalingWithRules / TestStoreScaleEvents / TestNormalizeDesiredReplicas)."""

from __future__ import annotations

import pytest

from inferline.autoscale.hpa import (
    ControllerConfig,
    HorizontalController,
    ScaleTarget,
    _Event,
    _Rec,
    replicas_change_per_period,
)
from inferline.autoscale.replica import MetricUnavailable, PodInfo, PodMetric, PodPhase
from inferline.autoscale.spec import (
    Behavior,
    HPASpec,
    MetricSourceType,
    MetricSpec,
    MetricTargetType,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    default_scale_down_rules,
    default_scale_up_rules,
)

NOW = 10_000.0


class Metrics:
    """A MetricsClient serving fixed values: per-pod samples, one object value, external series."""

    def __init__(
        self,
        pods: dict[str, float] | None = None,
        obj: float | None = None,
        external: list[float] | None = None,
    ) -> None:
        self.pods = pods or {}
        self.obj = obj
        self.external = external

    def pod_metrics(self, metric: MetricSpec) -> dict[str, PodMetric]:
        return {k: PodMetric(round(v * 1000)) for k, v in self.pods.items()}

    def object_metric(self, metric: MetricSpec) -> int:
        if self.obj is None:
            raise MetricUnavailable("no object value")
        return round(self.obj * 1000)

    def external_metric(self, metric: MetricSpec) -> list[int]:
        if self.external is None:
            raise MetricUnavailable("no external series")
        return [round(v * 1000) for v in self.external]


def pods_metric(target: float, name: str = "gpu_utilization") -> MetricSpec:
    return MetricSpec(MetricSourceType.PODS, name, MetricTargetType.AVERAGE_VALUE, round(target * 1000))


def ready_pods(n: int) -> list[PodInfo]:
    return [PodInfo(f"p{i}") for i in range(n)]


def uniform(n: int, value: float) -> Metrics:
    return Metrics(pods={f"p{i}": value for i in range(n)})


def rules(
    pods: int = 0, pods_period: int = 0, percent: int = 0, percent_period: int = 0, window: int = 0
) -> ScalingRules:
    """horizontal_test.go generateScalingRules."""
    policies = []
    if pods:
        policies.append(ScalingPolicy(PolicyType.PODS, pods, pods_period))
    if percent:
        policies.append(ScalingPolicy(PolicyType.PERCENT, percent, percent_period))
    return ScalingRules(window, SelectPolicy.MAX, tuple(policies))


def events(changes: list[int], period_s: int) -> list[_Event]:
    """horizontal_test.go generateEventsUniformDistribution: each event in the middle of its segment."""
    seg = period_s / len(changes)
    return [_Event(c, NOW - (period_s - seg * (i + 1) + seg / 2)) for i, c in enumerate(changes)]


# -- the Kubernetes documentation ------------------------------------------------------------------------------


def test_docs_50_replicas_at_90_against_75_scale_to_60() -> None:
    hpa = HorizontalController(HPASpec(1, 100, (pods_metric(75),)))
    d = hpa.reconcile(NOW, ScaleTarget(50, 50, ready_pods(50)), uniform(50, 90))
    assert (d.metric_desired, d.desired) == (60, 60)


def test_docs_scale_down_80_with_percent_10_and_pods_4_per_60s_select_max() -> None:
    down = ScalingRules(
        0,
        SelectPolicy.MAX,
        (ScalingPolicy(PolicyType.PODS, 4, 60), ScalingPolicy(PolicyType.PERCENT, 10, 60)),
    )
    hpa = HorizontalController(HPASpec(1, 100, (pods_metric(75),), Behavior(default_scale_up_rules(), down)))
    current, seen = 80, []
    for step in range(9):  # every 15 s, the metric wants 10 replicas throughout
        d = hpa.reconcile(step * 15.0, ScaleTarget(current, current, ready_pods(current)), uniform(current, 9.375))
        current = d.desired
        seen.append(current)
    # 80 -> 72 at once (10% = 8 > 4 pods); the 8 removed count against the next 60 s; then 72 -> 64 (10% of 72
    # is 7.2, the count kept is truncated: 64); 60 s later 64 -> 57.
    assert seen == [72, 72, 72, 72, 64, 64, 64, 64, 57]


def test_default_scale_up_is_max_of_4_pods_or_100_percent_per_15s() -> None:
    hpa = HorizontalController(HPASpec(1, 1000, (pods_metric(1),), Behavior()))
    current, seen = 1, []
    for step in range(5):
        d = hpa.reconcile(step * 15.0, ScaleTarget(current, current, ready_pods(current)), uniform(current, 1000))
        current = d.desired
        seen.append((current, d.limited))
    assert [c for c, _ in seen] == [5, 10, 20, 40, 80]  # 1+4, then doubling
    assert all(reason == "ScaleUpLimit" for _, reason in seen)


def test_without_behavior_scale_up_is_capped_at_twice_or_4_per_pass() -> None:
    hpa = HorizontalController(HPASpec(1, 1000, (pods_metric(1),)))
    current, seen = 1, []
    for step in range(4):
        current = hpa.reconcile(
            step * 15.0, ScaleTarget(current, current, ready_pods(current)), uniform(current, 1000)
        ).desired
        seen.append(current)
    assert seen == [4, 8, 16, 32]


def test_scale_down_stabilization_300s_keeps_the_highest_recommendation() -> None:
    hpa = HorizontalController(HPASpec(1, 100, (pods_metric(75),), Behavior()))
    current = 10
    history = []
    # load 90 (wants 12) at t=0, then it drops to 30 (wants 4): held at the highest recommendation for 300 s
    for step in range(25):
        t = step * 15.0
        util = 90.0 if step == 0 else 30.0
        d = hpa.reconcile(t, ScaleTarget(current, current, ready_pods(current)), uniform(current, util))
        current = d.desired
        history.append((t, current))
    assert history[0] == (0.0, 12)
    held = [c for t, c in history if 0 < t <= 285]
    assert set(held) == {12}
    assert dict(history)[300.0] == 5  # the 12 from t=0 leaves the window (ceil(12 x 30 / 75) = 5)


def test_flapping_load_is_held_by_the_window() -> None:
    """Total load swinging between 1000 and 400 units each pass: scale up once, then hold (no flapping)."""
    hpa = HorizontalController(HPASpec(1, 100, (pods_metric(75),), Behavior()))
    current, counts = 10, []
    for step in range(40):
        load = 1000.0 if step % 2 == 0 else 400.0
        target = ScaleTarget(current, current, ready_pods(current))
        current = hpa.reconcile(step * 15.0, target, uniform(current, load / current)).desired
        counts.append(current)
    assert counts == [14] * 40


def test_tolerance_band_is_a_no_op_and_just_outside_it_scales() -> None:
    spec = HPASpec(1, 100, (pods_metric(100),))
    inside = HorizontalController(spec).reconcile(NOW, ScaleTarget(10, 10, ready_pods(10)), uniform(10, 110))
    assert inside.desired == 10  # ratio 1.10: inside [0.9, 1.1]
    outside = HorizontalController(spec).reconcile(NOW, ScaleTarget(10, 10, ready_pods(10)), uniform(10, 110.1))
    assert outside.desired == 12  # 1.101 x 10 -> 11.01 -> 12
    below = HorizontalController(spec).reconcile(NOW, ScaleTarget(10, 10, ready_pods(10)), uniform(10, 90))
    assert below.desired == 10  # 0.90: the lower edge is inside too


def test_per_direction_tolerance_expresses_scale_down_at_30_of_a_75_target() -> None:
    """behavior.scaleDown.tolerance 0.6 with target 75: no scale down until utilization < 30."""
    behavior = Behavior(
        default_scale_up_rules(), ScalingRules(0, SelectPolicy.MAX, default_scale_down_rules().policies, 0.6)
    )
    spec = HPASpec(1, 100, (pods_metric(75),), behavior)
    at_40 = HorizontalController(spec).reconcile(NOW, ScaleTarget(10, 10, ready_pods(10)), uniform(10, 40))
    assert at_40.desired == 10
    at_29 = HorizontalController(spec).reconcile(NOW, ScaleTarget(10, 10, ready_pods(10)), uniform(10, 29))
    assert at_29.desired == 4  # ceil(29/75 x 10)
    off = ControllerConfig(configurable_tolerance=False)  # feature gate off: the cluster-wide 0.1 applies
    assert (
        HorizontalController(spec, off).reconcile(NOW, ScaleTarget(10, 10, ready_pods(10)), uniform(10, 40)).desired
        == 6
    )


def test_several_metrics_the_largest_proposal_wins() -> None:
    spec = HPASpec(1, 100, (pods_metric(75), pods_metric(10, "queue")))

    class Two(Metrics):
        def pod_metrics(self, metric: MetricSpec) -> dict[str, PodMetric]:
            value = 60.0 if metric.name == "gpu_utilization" else 25.0
            return {f"p{i}": PodMetric(round(value * 1000)) for i in range(4)}

    d = HorizontalController(spec).reconcile(NOW, ScaleTarget(4, 4, ready_pods(4)), Two())
    assert d.proposals == {spec.metrics[0].label: 4, spec.metrics[1].label: 10}
    assert d.desired == 8  # 10, capped at max(2 x 4, 4) without behavior
    assert d.metric == spec.metrics[1].label


def test_a_failed_metric_blocks_scale_down_but_not_scale_up() -> None:
    spec = HPASpec(
        1, 100, (pods_metric(75), MetricSpec(MetricSourceType.EXTERNAL, "q", MetricTargetType.AVERAGE_VALUE, 5000))
    )
    down = HorizontalController(spec).reconcile(NOW, ScaleTarget(10, 10, ready_pods(10)), uniform(10, 10))
    assert down.desired == 10 and down.metric_desired == -1 and down.errors
    up = HorizontalController(spec).reconcile(NOW, ScaleTarget(10, 10, ready_pods(10)), uniform(10, 150))
    assert up.desired == 20


def test_min_and_max_are_enforced_before_metrics() -> None:
    spec = HPASpec(2, 5, (pods_metric(75),))
    assert HorizontalController(spec).reconcile(NOW, ScaleTarget(1, 1, ready_pods(1)), uniform(1, 0)).desired == 2
    assert HorizontalController(spec).reconcile(NOW, ScaleTarget(7, 7, ready_pods(7)), uniform(7, 500)).desired == 5
    assert HorizontalController(spec).reconcile(NOW, ScaleTarget(4, 4, ready_pods(4)), uniform(4, 500)).desired == 5
    zero = HorizontalController(spec).reconcile(NOW, ScaleTarget(0, 0, []), uniform(0, 500))
    assert zero.desired == 0 and "ScalingDisabled" in zero.reason


def test_not_ready_pods_pending_are_zero_on_scale_up_but_loading_pods_count_for_custom_metrics() -> None:
    spec = HPASpec(1, 100, (pods_metric(75),))
    # 2 Ready pods at 150, 2 Pending pods (scheduling / pulling the image): unready -> 0 on a scale up.
    pods = [*ready_pods(2), PodInfo("p2", PodPhase.PENDING, False), PodInfo("p3", PodPhase.PENDING, False)]
    d = HorizontalController(spec).reconcile(NOW, ScaleTarget(4, 4, pods), Metrics({"p0": 150, "p1": 150}))
    assert d.desired == 4  # (150+150+0+0)/4 = 75: ratio 1 -> no change (the new pods are on their way)
    # A Running-but-not-Ready pod (loading the model) that reports GPU util 0 counts as a ready sample:
    pods = [*ready_pods(2), PodInfo("p2", PodPhase.RUNNING, False)]
    d = HorizontalController(spec).reconcile(NOW, ScaleTarget(3, 3, pods), Metrics({"p0": 150, "p1": 150, "p2": 0}))
    assert d.desired == 4  # avg 100 -> ratio 1.333 x 3 ready-for-metrics pods
    # ... while one with no sample yet is "missing": 0 on a scale up.
    d = HorizontalController(spec).reconcile(NOW, ScaleTarget(3, 3, pods), Metrics({"p0": 150, "p1": 150}))
    assert d.desired == 4  # ratio 2 -> missing at 0 -> (300/3)/75 = 1.333 -> ceil(4.0) = 4


def test_pods_being_deleted_are_ignored() -> None:
    pods = [*ready_pods(3), PodInfo("p3", deleting=True)]
    d = HorizontalController(HPASpec(1, 100, (pods_metric(10),))).reconcile(
        NOW, ScaleTarget(3, 3, pods), Metrics({"p0": 20, "p1": 20, "p2": 20, "p3": 0})
    )
    assert d.desired == 6


# -- horizontal_test.go TestScalingWithRules (convertDesiredReplicasWithBehaviorRate) ---------------------------

SCALING_WITH_RULES = [
    # name, up events, down events, min, max, up rules, down rules, current, desired, expected, condition
    ("within range", [], [], 3, 8, None, None, 5, 7, 7, "DesiredWithinRange"),
    ("below min", [], [], 2, 8, None, None, 3, 1, 2, "TooFewReplicas"),
    ("min 0", [], [], 0, 10, None, None, 1, 0, 0, "DesiredWithinRange"),
    ("max below up limit", [], [], 1, 10, None, None, 20, 1000, 10, "TooManyReplicas"),
    ("more than max", [], [], 100, 150, None, None, 100, 1000, 150, "TooManyReplicas"),
    ("user up limit", [], [], 1, 2000, rules(0, 0, 1, 60), None, 3, 1000, 4, "ScaleUpLimit"),
    ("user down limit", [], [], 3, 2000, None, rules(20, 60), 1000, 3, 980, "ScaleDownLimit"),
    ("default up", [], [], 1, 1000, None, None, 10, 50, 20, "ScaleUpLimit"),
    ("pods > percent", [], [], 1, 1000, rules(100, 60, 100, 60), None, 10, 500, 110, "ScaleUpLimit"),
    ("percent > pods", [], [], 1, 1000, rules(2, 60, 100, 60), None, 10, 500, 20, "ScaleUpLimit"),
    ("large pods", [], [], 1, 1000, rules(100, 60), None, 10, 50, 50, "DesiredWithinRange"),
    ("pods limit", [], [], 1, 1000, rules(30, 60), None, 10, 50, 40, "ScaleUpLimit"),
    ("percent limit", [], [], 1, 1000, rules(0, 0, 200, 60), None, 10, 50, 30, "ScaleUpLimit"),
    ("down percent > pods", [], [], 1, 1000, None, rules(20, 60, 1, 60, 300), 100, 2, 80, "ScaleDownLimit"),
    ("down pods > percent", [], [], 1, 1000, None, rules(2, 60, 1, 60, 300), 100, 2, 98, "ScaleDownLimit"),
    ("down min", [], [], 5, 1000, None, rules(0, 0, 100, 60, 300), 10, 2, 5, "TooFewReplicas"),
    ("down pods limit", [], [], 1, 1000, None, rules(5, 60, 0, 0, 300), 10, 2, 5, "ScaleDownLimit"),
    ("down percent", [], [], 1, 1000, None, rules(0, 0, 50, 60, 300), 10, 5, 5, "DesiredWithinRange"),
    ("up events max", [1, 5, 9], [], 1, 200, rules(300, 60), None, 100, 500, 200, "TooManyReplicas"),
    ("up events hold", [1, 5, 9], [], 1, 1000, rules(5, 120), None, 100, 500, 100, "ScaleUpLimit"),
    ("up events pods", [1, 5, 9], [], 1, 1000, rules(150, 120), None, 100, 500, 235, "ScaleUpLimit"),
    ("up events percent", [1, 5, 9], [], 1, 1000, rules(0, 0, 200, 120), None, 100, 500, 255, "ScaleUpLimit"),
    ("up and down events", [4], [2], 1, 1000, rules(0, 0, 300, 300), None, 6, 24, 16, "ScaleUpLimit"),
    ("down default events", [], [1, 5, 9], 1, 1000, None, None, 10, 5, 5, "DesiredWithinRange"),
    ("down events min", [], [1, 5, 9], 5, 1000, None, rules(130, 120, 0, 0, 300), 100, 0, 5, "TooFewReplicas"),
    ("down events pods", [], [1, 5, 9], 1, 1000, None, rules(5, 120, 0, 0, 300), 100, 2, 100, "ScaleDownLimit"),
    ("down events percent", [], [2, 4, 6], 1, 1000, None, rules(0, 0, 50, 120, 300), 100, 0, 56, "ScaleDownLimit"),
    ("down up-and-down events", [2], [4], 1, 1000, None, rules(0, 0, 50, 180), 10, 1, 6, "ScaleDownLimit"),
    ("down events block", [], [10, 10, 10], 1, 1000, None, rules(0, 0, 10, 120, 300), 100, 0, 100, "ScaleDownLimit"),
    ("down events allow", [], [10, 10, 10], 1, 1000, None, rules(0, 0, 1000, 120, 300), 10, 5, 5, "DesiredWithinRange"),
    ("outdated up", [8, 12, 9, 11], [], 1, 1000, rules(1000, 30, 100, 60), None, 100, 200, 200, "DesiredWithinRange"),
]


@pytest.mark.parametrize("case", SCALING_WITH_RULES, ids=[c[0] for c in SCALING_WITH_RULES])
def test_scaling_with_rules(case: tuple) -> None:  # type: ignore[type-arg]
    _, up_ev, down_ev, lo, hi, up, down, current, desired, expected, condition = case
    behavior = Behavior(up or default_scale_up_rules(), down or default_scale_down_rules())
    queue = MetricSpec(MetricSourceType.EXTERNAL, "queue", MetricTargetType.AVERAGE_VALUE, 1000)
    hpa = HorizontalController(HPASpec(lo, hi, (queue,), behavior))
    if up_ev:
        hpa.scale_up_events = events(up_ev, 120)
    if down_ev:
        hpa.scale_down_events = events(down_ev, 120)
    got = hpa._limit_by_rate(NOW, current, desired, lo, behavior.scale_up, behavior.scale_down)
    assert got == (expected, condition)


def test_store_scale_events_reuses_the_last_outdated_slot() -> None:
    """TestStoreScaleEvents "replace one entry, use policies with different periods"."""
    behavior = Behavior(rules(10, 60, 100, 30), default_scale_down_rules())
    hpa = HorizontalController(HPASpec(1, 100, (pods_metric(1),), behavior))
    hpa.scale_up_events = [_Event(8, NOW - 29), _Event(6, NOW - 59), _Event(7, NOW - 61), _Event(9, NOW - 61)]
    assert replicas_change_per_period(NOW, 60, hpa.scale_up_events) == 14
    hpa._store_scale_event(NOW, 10, 15)
    assert [(e.replica_change, e.outdated) for e in hpa.scale_up_events] == [
        (8, False),
        (6, False),
        (7, True),
        (5, False),
    ]


def test_no_events_are_stored_without_behavior() -> None:
    hpa = HorizontalController(HPASpec(1, 100, (pods_metric(1),)))
    hpa._store_scale_event(NOW, 10, 15)
    assert hpa.scale_up_events == [] and hpa.scale_down_events == []


@pytest.mark.parametrize(
    ("recs", "desired", "expected", "length"),
    [
        ([], 5, 5, 1),
        ([(4, -120), (5, -60)], 3, 5, 3),
        ([(1, -120), (2, -60)], 3, 3, 3),
        ([(10, -600), (9, -540)], 3, 3, 2),
        ([(10, -600), (4, -60), (5, -120), (9, -540)], 3, 5, 4),
    ],
)
def test_normalize_desired_replicas_stabilization(
    recs: list[tuple[int, int]], desired: int, expected: int, length: int
) -> None:
    """TestNormalizeDesiredReplicas (the behaviour-less window of 5 minutes)."""
    hpa = HorizontalController(HPASpec(1, 100, (pods_metric(1),)))
    hpa.recommendations = [_Rec(r, NOW + dt) for r, dt in recs]
    assert hpa._stabilize(NOW, desired) == expected
    assert len(hpa.recommendations) == length
