"""Autoscaler configurations: HPA manifests, KEDA ScaledObjects, Helm values and presets, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferline.autoscale.configs import PRESETS, from_values, load_autoscaler
from inferline.autoscale.keda import KedaController, KedaSpec, PrometheusTrigger
from inferline.autoscale.quantity import QuantityError, parse_milli
from inferline.autoscale.sources import Aggregation, Quantity, parse_query
from inferline.autoscale.spec import MetricSourceType, MetricTargetType, SelectPolicy, SpecError, parse_hpa

SEED_HPA = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: vllm-hpa}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: vllm-inference}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Pods
    pods:
      metric: {name: gpu_utilization}
      target: {type: AverageValue, averageValue: "75"}
"""


def test_the_seed_notes_hpa_manifest_loads(tmp_path: Path) -> None:
    f = tmp_path / "hpa.yaml"
    f.write_text(SEED_HPA)
    cfg = load_autoscaler(str(f))
    assert cfg.kind == "hpa" and cfg.hpa is not None
    assert (cfg.hpa.min_replicas, cfg.hpa.max_replicas, cfg.hpa.behavior) == (2, 10, None)
    m = cfg.hpa.metrics[0]
    assert (m.type, m.name, m.target_type, m.target) == (
        MetricSourceType.PODS,
        "gpu_utilization",
        MetricTargetType.AVERAGE_VALUE,
        75000,
    )


def test_behavior_defaults_fill_unset_fields_like_the_api_server() -> None:
    spec = parse_hpa(
        {
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "inferline_queue_depth"},
                        "target": {"type": "Value", "value": "500m"},
                    },
                }
            ],
            "behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
        }
    )
    assert spec.min_replicas == 1 and spec.metrics[0].target == 500
    b = spec.behavior
    assert b is not None
    assert b.scale_down.stabilization_window_s is None  # the controller's 300 s default applies
    assert b.scale_down.select_policy is SelectPolicy.MAX and b.scale_down.policies[0].period_s == 60
    assert b.scale_up.stabilization_window_s == 0 and len(b.scale_up.policies) == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"minReplicas": 1, "maxReplicas": 3, "metrics": []}, "spec.metrics is empty"),
        ({"maxReplicas": 3}, "spec.metrics: required"),
        (
            {
                "minReplicas": 4,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "1"}},
                    }
                ],
            },
            "minReplicas (4) is above maxReplicas (3)",
        ),
        (
            {
                "maxReplicas": 3,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "x"}, "target": {"type": "Value", "value": "1"}}}
                ],
            },
            "a Pods metric takes AverageValue",
        ),
        (
            {
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "lots"}},
                    }
                ],
            },
            "not a Kubernetes quantity",
        ),
        (
            {
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "1"}},
                    }
                ],
                "behavior": {"scaleUp": {"selectPolicy": "Most"}},
            },
            "selectPolicy: must be Max, Min or Disabled",
        ),
    ],
)
def test_bad_hpa_specs_name_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_hpa(spec)


def test_quantities_round_up_to_milli_like_kubernetes() -> None:
    assert [parse_milli(x) for x in ("75", "0.75", "500m", "1.5k", "1Ki", "0.0001")] == [
        75000,
        750,
        500,
        1500000,
        1024000,
        1,
    ]
    with pytest.raises(QuantityError):
        parse_milli("5 pods")


def test_every_preset_is_valid_and_named_targets_map_to_metrics() -> None:
    for name in PRESETS:
        cfg = load_autoscaler(name)
        assert cfg.max_replicas == 10 and cfg.min_replicas == 2, name
    running = load_autoscaler("running", max_num_seqs=8)
    assert running.hpa is not None and running.hpa.metrics[0].target == 6000


def test_values_errors_are_one_line_and_name_the_key() -> None:
    with pytest.raises(SpecError, match=r"autoscaling.minReplicas \(12\) is above autoscaling.maxReplicas \(10\)"):
        from_values({"autoscaling": {"minReplicas": 12, "maxReplicas": 10, "targetGPUUtilization": 75}})
    with pytest.raises(SpecError, match=r"autoscaling\.targetGPUUtilisation: unknown key"):
        from_values({"targetGPUUtilisation": 75})
    with pytest.raises(SpecError, match="no target"):
        from_values({"minReplicas": 1})
    with pytest.raises(SpecError, match="scaleDownUtilization"):
        from_values({"targetGPUUtilization": 75, "scaleDownUtilization": 80})


def test_keda_values_make_a_scaled_object_with_prometheus_triggers() -> None:
    cfg = from_values(PRESETS["keda-queue"], "k")
    assert cfg.keda is not None
    queries = [t.query for t in cfg.keda.triggers]
    assert queries == ["sum(inferline_queue_depth)", "sum(vllm:num_requests_running)"]
    hpa = cfg.keda.hpa_spec()
    assert hpa.min_replicas == 2 and all(m.type is MetricSourceType.EXTERNAL for m in hpa.metrics)
    assert [m.target for m in hpa.metrics] == [5000, 192000]


def test_scaled_object_manifest(tmp_path: Path) -> None:
    f = tmp_path / "so.yaml"
    f.write_text(
        """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: vllm}
spec:
  scaleTargetRef: {name: vllm}
  minReplicaCount: 0
  maxReplicaCount: 4
  pollingInterval: 15
  triggers:
  - type: prometheus
    metadata:
      serverAddress: http://prometheus:9090
      query: sum(vllm:num_requests_waiting{model_name="llama"})
      threshold: "5"
      activationThreshold: "1"
"""
    )
    cfg = load_autoscaler(str(f))
    assert cfg.keda is not None and cfg.min_replicas == 0 and cfg.max_replicas == 4
    t = cfg.keda.triggers[0]
    assert (t.threshold, t.activation_threshold, cfg.keda.polling_interval_s) == (5.0, 1.0, 15.0)


def test_keda_activation_and_cooldown() -> None:
    keda = KedaController(KedaSpec((PrometheusTrigger("sum(inferline_queue_depth)", 5, 1),), cooldown_period_s=60))
    name = keda.metric_names()[0]
    assert keda.poll(0, 0, {name: 1.0}) is None  # not above the activation threshold
    assert keda.poll(30, 0, {name: 3.0}) == 1  # active at zero replicas: scale to max(minReplicaCount, 1)
    assert keda.poll(60, 1, {name: 0.0}) is None  # inactive, but within the cooldown
    assert keda.poll(90, 1, {name: 0.0}) == 0  # 60 s since last active
    with_min = KedaController(KedaSpec((PrometheusTrigger("sum(inferline_queue_depth)", 5),), min_replica_count=2))
    assert with_min.poll(0, 2, {name: 0.0}) is None and with_min.hpa.spec.min_replicas == 2


def test_queries_the_simulator_understands() -> None:
    assert parse_query('sum(inferline_queue_depth{model="x"})').quantity is Quantity.QUEUE
    ref = parse_query("avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL[1m]))")
    assert (ref.quantity, ref.aggregation, ref.window_s) == (Quantity.GPU_UTIL, Aggregation.AVG, 60.0)
    rate = parse_query("sum(rate(inferline_requests_total[2m]))")
    assert (rate.quantity, rate.window_s) == (Quantity.RATE, 120.0)
    with pytest.raises(ValueError, match="one series per pod"):
        parse_query("vllm:num_requests_running")
    with pytest.raises(ValueError, match="no metric"):
        parse_query("sum(http_requests_total)")


def test_unknown_metric_names_are_refused_up_front(tmp_path: Path) -> None:
    f = tmp_path / "hpa.yaml"
    f.write_text(SEED_HPA.replace("gpu_utilization", "tokens_per_second"))
    with pytest.raises(SpecError, match="no metric 'tokens_per_second'"):
        load_autoscaler(str(f))
