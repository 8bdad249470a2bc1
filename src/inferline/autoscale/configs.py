"""Autoscaling configurations to simulate: Helm-chart `autoscaling` values, HPA manifests, KEDA ScaledObjects, presets.

The Helm values form (deploy/helm/inferline `autoscaling:`), and how each key becomes an autoscaling/v2 HPA:

    autoscaling:
      enabled: true
      engine: hpa                       # hpa | keda
      minReplicas: 2
      maxReplicas: 10
      targetGPUUtilization: 75          # Pods DCGM_FI_DEV_GPU_UTIL, AverageValue 75
      scaleDownUtilization: 30          # behavior.scaleDown.tolerance = 1 - 30/75 (HPAConfigurableTolerance):
                                        #   no scale-down until utilization is below 30
      scaleDownStabilizationSeconds: 300
      scaleUpStabilizationSeconds: 0
      targetQueueDepth: 5               # External inferline_queue_depth, AverageValue 5 (per replica)
      targetKVCacheUsage: 0.6           # Pods vllm:kv_cache_usage_perc, AverageValue 0.6 (a value > 1 is a percent)
      targetRunningRequests: 192        # Pods vllm:num_requests_running, AverageValue 192
      targetWaitingRequests: 5          # Pods vllm:num_requests_waiting, AverageValue 5
      targetRequestRate: 20             # External inferline_request_rate (rate(inferline_requests_total[1m])),
                                        #   AverageValue 20 req/s per replica
      behavior: {...}                   # an HPA behavior block, used as is (overrides the *Seconds keys)
      keda: {pollingInterval: 30, cooldownPeriod: 300, minReplicaCount: 2, activationThreshold: 0,
             useCachedMetrics: false}
With engine: keda each target becomes a prometheus trigger `sum(METRIC)` with threshold = target (KEDA's
AverageValue: replicas = ceil(sum / threshold)), the same behavior passed through KEDA's
advanced.horizontalPodAutoscalerConfig.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inferline.autoscale.keda import KedaSpec, PrometheusTrigger, parse_scaled_object
from inferline.autoscale.presets import PRESETS
from inferline.autoscale.quantity import format_milli, parse_milli
from inferline.autoscale.sources import parse_query, resolve_metric
from inferline.autoscale.spec import (
    Behavior,
    HPASpec,
    MetricSourceType,
    MetricSpec,
    MetricTargetType,
    ScalingRules,
    SpecError,
    default_scale_down_rules,
    default_scale_up_rules,
    parse_behavior,
    parse_hpa,
)

__all__ = ["AutoscalerConfig", "from_values", "load_autoscaler", "manifest", "resolve_autoscaler", "static"]

_VALUE_KEYS = {
    "enabled",
    "engine",
    "minReplicas",
    "maxReplicas",
    "targetGPUUtilization",
    "scaleDownUtilization",
    "scaleDownStabilizationSeconds",
    "scaleUpStabilizationSeconds",
    "targetQueueDepth",
    "targetKVCacheUsage",
    "targetRunningRequests",
    "targetWaitingRequests",
    "targetRequestRate",
    "behavior",
    "keda",
}
_KEDA_KEYS = {"pollingInterval", "cooldownPeriod", "minReplicaCount", "activationThreshold", "useCachedMetrics"}
# key -> (metric as the HPA names it, metric type, KEDA query)
_TARGETS = {
    "targetGPUUtilization": ("DCGM_FI_DEV_GPU_UTIL", MetricSourceType.PODS, "sum(DCGM_FI_DEV_GPU_UTIL)"),
    "targetQueueDepth": ("inferline_queue_depth", MetricSourceType.EXTERNAL, "sum(inferline_queue_depth)"),
    "targetKVCacheUsage": ("vllm:kv_cache_usage_perc", MetricSourceType.PODS, "sum(vllm:kv_cache_usage_perc)"),
    "targetRunningRequests": ("vllm:num_requests_running", MetricSourceType.PODS, "sum(vllm:num_requests_running)"),
    "targetWaitingRequests": ("vllm:num_requests_waiting", MetricSourceType.PODS, "sum(vllm:num_requests_waiting)"),
    "targetRequestRate": (
        "inferline_request_rate",
        MetricSourceType.EXTERNAL,
        "sum(rate(inferline_requests_total[1m]))",
    ),
}


@dataclass(frozen=True, slots=True)
class AutoscalerConfig:
    """One autoscaling setup to simulate: an HPA, or a KEDA ScaledObject (which owns an HPA)."""

    name: str
    hpa: HPASpec | None = None
    keda: KedaSpec | None = None
    source: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.hpa is None) == (self.keda is None):
            raise SpecError("an autoscaler is either an HPA or a KEDA ScaledObject")
        for m in self.effective_hpa.metrics:
            if self.keda is not None:
                continue
            if m.type in (MetricSourceType.RESOURCE, MetricSourceType.CONTAINER_RESOURCE):
                raise SpecError(
                    f"metric {m.label}: the simulator has no CPU/memory model; use a Pods or External metric"
                )
            try:
                q = resolve_metric(m.name)
            except ValueError as exc:
                raise SpecError(str(exc)) from None
            if m.type is MetricSourceType.PODS and not q.per_pod:
                raise SpecError(f"metric {m.name} is a gateway metric (one series): use type External or Object")
        if self.keda is not None:
            for t in self.keda.triggers:
                try:
                    parse_query(t.query)
                except ValueError as exc:
                    raise SpecError(str(exc)) from None

    @property
    def kind(self) -> str:
        return "keda" if self.keda is not None else "hpa"

    @property
    def effective_hpa(self) -> HPASpec:
        return self.keda.hpa_spec() if self.keda is not None else self.hpa  # type: ignore[return-value]

    @property
    def min_replicas(self) -> int:
        return self.keda.min_replica_count if self.keda is not None else self.effective_hpa.min_replicas

    @property
    def max_replicas(self) -> int:
        return self.effective_hpa.max_replicas

    def describe(self) -> str:
        if self.keda is not None:
            trig = "; ".join(f"{t.query} > {t.threshold:g}" for t in self.keda.triggers)
            return f"KEDA {trig} (poll {self.keda.polling_interval_s:g}s), {self.min_replicas}-{self.max_replicas}"
        h = self.effective_hpa
        metrics = "; ".join(m.label for m in h.metrics)
        extra = ""
        if h.behavior is not None:
            down = h.behavior.scale_down
            if down.stabilization_window_s is not None:
                extra += f", down window {down.stabilization_window_s}s"
            if down.tolerance is not None:
                extra += f", down tolerance {down.tolerance:g}"
        return f"HPA {metrics}, {h.min_replicas}-{h.max_replicas}{extra}"


def from_values(values: dict[str, Any], name: str = "values", max_num_seqs: int = 256) -> AutoscalerConfig:
    """The chart's `autoscaling` values (or a document holding them under `autoscaling:`) -> a config."""
    block = values.get("autoscaling", values) if isinstance(values, dict) else values
    if not isinstance(block, dict):
        raise SpecError("autoscaling values must be a mapping")
    unknown = sorted(set(block) - _VALUE_KEYS)
    if unknown:
        raise SpecError(f"autoscaling.{unknown[0]}: unknown key; known: {', '.join(sorted(_VALUE_KEYS))}")
    if block.get("enabled") is False:
        raise SpecError("autoscaling.enabled is false: nothing to simulate (use --replicas for a fixed fleet)")
    block = {k: _placeholder(v, max_num_seqs) for k, v in block.items()}
    engine = block.get("engine", "hpa")
    if engine not in ("hpa", "keda"):
        raise SpecError(f"autoscaling.engine: hpa or keda; got {engine!r}")
    lo = _int(block.get("minReplicas", 1), "autoscaling.minReplicas")
    hi = _int(block.get("maxReplicas", 10), "autoscaling.maxReplicas")
    if lo > hi:
        raise SpecError(f"autoscaling.minReplicas ({lo}) is above autoscaling.maxReplicas ({hi})")
    targets: list[tuple[str, str, MetricSourceType, str, float]] = []
    for key, (metric, mtype, query) in _TARGETS.items():
        if block.get(key) is None:
            continue
        value = _num(block[key], f"autoscaling.{key}")
        if key == "targetKVCacheUsage" and value > 1:
            value = value / 100.0
        if value <= 0:
            raise SpecError(f"autoscaling.{key}: must be > 0; got {block[key]!r}")
        targets.append((key, metric, mtype, query, value))
    if not targets:
        raise SpecError(
            "autoscaling: no target; set one of " + ", ".join(_TARGETS) + " (or give an HPA manifest with --hpa)"
        )
    behavior = _behavior_from_values(block)
    if engine == "keda":
        keda_cfg = block.get("keda") or {}
        if not isinstance(keda_cfg, dict):
            raise SpecError("autoscaling.keda must be a mapping")
        bad = sorted(set(keda_cfg) - _KEDA_KEYS)
        if bad:
            raise SpecError(f"autoscaling.keda.{bad[0]}: unknown key; known: {', '.join(sorted(_KEDA_KEYS))}")
        activation = _num(keda_cfg.get("activationThreshold", 0), "autoscaling.keda.activationThreshold")
        triggers = tuple(
            PrometheusTrigger(
                q,
                v,
                activation,
                use_cached_metrics=bool(keda_cfg.get("useCachedMetrics", False)),
                name=f"s{i}-prometheus",
            )
            for i, (_, _, _, q, v) in enumerate(targets)
        )
        spec = KedaSpec(
            triggers,
            min_replica_count=_int(keda_cfg.get("minReplicaCount", lo), "autoscaling.keda.minReplicaCount"),
            max_replica_count=hi,
            polling_interval_s=_num(keda_cfg.get("pollingInterval", 30), "autoscaling.keda.pollingInterval"),
            cooldown_period_s=_num(keda_cfg.get("cooldownPeriod", 300), "autoscaling.keda.cooldownPeriod"),
            behavior=behavior,
            name=name,
        )
        return AutoscalerConfig(name, keda=spec, source="values", values=dict(block))
    metrics = tuple(
        MetricSpec(mtype, metric, MetricTargetType.AVERAGE_VALUE, parse_milli(repr(float(v))))
        for _, metric, mtype, _, v in targets
    )
    return AutoscalerConfig(name, hpa=HPASpec(lo, hi, metrics, behavior, name), source="values", values=dict(block))


def _behavior_from_values(block: dict[str, Any]) -> Behavior | None:
    if block.get("behavior") is not None:
        return parse_behavior(block["behavior"], "autoscaling.behavior")
    down_window = block.get("scaleDownStabilizationSeconds")
    up_window = block.get("scaleUpStabilizationSeconds")
    down_util = block.get("scaleDownUtilization")
    if down_window is None and up_window is None and down_util is None:
        return None
    up = default_scale_up_rules()
    if up_window is not None:
        up = ScalingRules(_int(up_window, "autoscaling.scaleUpStabilizationSeconds"), up.select_policy, up.policies)
    down = default_scale_down_rules()
    tolerance = None
    if down_util is not None:
        target = block.get("targetGPUUtilization")
        if target is None:
            raise SpecError("autoscaling.scaleDownUtilization needs autoscaling.targetGPUUtilization")
        du, tu = _num(down_util, "autoscaling.scaleDownUtilization"), _num(target, "autoscaling.targetGPUUtilization")
        if not 0 <= du < tu:
            raise SpecError(f"autoscaling.scaleDownUtilization ({du:g}) must be below targetGPUUtilization ({tu:g})")
        tolerance = 1.0 - du / tu
    window = _int(down_window, "autoscaling.scaleDownStabilizationSeconds") if down_window is not None else None
    down = ScalingRules(window, down.select_policy, down.policies, tolerance)
    return Behavior(up, down)


def load_autoscaler(item: str, max_num_seqs: int = 256) -> AutoscalerConfig:
    """A preset name, or a YAML file: an HPA manifest, a KEDA ScaledObject, or Helm values (autoscaling:)."""
    if item in PRESETS:
        cfg = from_values(PRESETS[item], item, max_num_seqs)
        return AutoscalerConfig(cfg.name, cfg.hpa, cfg.keda, f"preset {item}", cfg.values)
    path = Path(item)
    if not path.exists():
        raise SpecError(f"{item}: not a preset ({', '.join(PRESETS)}) and no such file")
    if path.is_dir():
        raise SpecError(f"{item}: is a directory; give the YAML file itself")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise SpecError(f"{path}: not readable YAML ({str(exc).splitlines()[0]})") from None
    if not docs:
        raise SpecError(f"{path}: empty")
    by_kind = {d.get("kind"): d for d in docs if isinstance(d, dict)}
    name = path.stem
    try:
        if "ScaledObject" in by_kind:
            keda = parse_scaled_object(by_kind["ScaledObject"])
            return AutoscalerConfig(name, keda=keda, source=str(path))
        if "HorizontalPodAutoscaler" in by_kind:
            return AutoscalerConfig(name, hpa=parse_hpa(by_kind["HorizontalPodAutoscaler"]), source=str(path))
        doc = docs[0]
        if isinstance(doc, dict) and "autoscaling" in doc:
            cfg = from_values(doc, name, max_num_seqs)
            return AutoscalerConfig(name, cfg.hpa, cfg.keda, str(path), cfg.values)
        if isinstance(doc, dict) and ("maxReplicas" in doc or "targetGPUUtilization" in doc):
            cfg = from_values(doc, name, max_num_seqs)
            return AutoscalerConfig(name, cfg.hpa, cfg.keda, str(path), cfg.values)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    if isinstance(docs[0], dict) and isinstance(docs[0].get("engines"), list):
        # The chart's values (deploy render's values.yaml): the chart turns them into the HPA/ScaledObject;
        # reading its output, not a second copy of its templates, keeps one source of truth.
        raise SpecError(
            f"{path}: these are the Helm chart's values; simulate what the chart renders from them: "
            "`inferline deploy render -c inferline.yaml --out DIR --manifests`, then `--hpa DIR/manifests.yaml`"
        )
    raise SpecError(f"{path}: no HorizontalPodAutoscaler, ScaledObject or `autoscaling:` values in it")


def static(n: int, name: str | None = None) -> AutoscalerConfig:
    """N fixed replicas (an HPA with minReplicas = maxReplicas = N never changes the count)."""
    metric = MetricSpec(MetricSourceType.EXTERNAL, "inferline_queue_depth", MetricTargetType.AVERAGE_VALUE, 1000)
    return AutoscalerConfig(
        name or f"static:{n}", hpa=HPASpec(n, n, (metric,), name=name or f"static-{n}"), source="fixed replicas"
    )


def resolve_autoscaler(item: str, max_num_seqs: int = 256) -> AutoscalerConfig:
    """A preset, `static:N`, or a YAML file (see load_autoscaler)."""
    if item.startswith("static:"):
        try:
            n = int(item.split(":", 1)[1])
        except ValueError:
            raise SpecError(f"{item}: static:N needs a whole number of replicas") from None
        if n < 1:
            raise SpecError(f"{item}: static:N needs N >= 1")
        return static(n, item)
    if item not in PRESETS and not Path(item).exists():
        raise SpecError(f"{item!r} is neither a preset ({', '.join(PRESETS)}, static:N) nor a file")
    return load_autoscaler(item, max_num_seqs)


_SEQS = re.compile(r"^\{seqs\*([0-9.]+)\}$")


def _placeholder(v: Any, max_num_seqs: int) -> Any:
    """ "{seqs*0.75}" (in presets) -> 75% of the engine's max_num_seqs, at least 1."""
    m = _SEQS.match(v) if isinstance(v, str) else None
    return max(1, round(float(m.group(1)) * max_num_seqs)) if m else v


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{where}: must be an integer; got {v!r}")
    return v


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            return float(str(v))
        except ValueError:
            raise SpecError(f"{where}: must be a number; got {v!r}") from None
    return float(v)


def manifest(cfg: AutoscalerConfig, target: str = "inferline-engine") -> dict[str, Any]:
    """The Kubernetes object CFG stands for: an autoscaling/v2 HPA, or a keda.sh/v1alpha1 ScaledObject."""
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}
    if cfg.keda is not None:
        k = cfg.keda
        spec: dict[str, Any] = {
            "scaleTargetRef": {"name": target},
            "pollingInterval": int(k.polling_interval_s),
            "cooldownPeriod": int(k.cooldown_period_s),
            "minReplicaCount": k.min_replica_count,
            "maxReplicaCount": k.max_replica_count,
        }
        if k.behavior is not None:
            spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": _behavior_doc(k.behavior)}}
        spec["triggers"] = [
            {
                "type": "prometheus",
                "metricType": t.metric_type.value,
                "metadata": {
                    "serverAddress": "http://prometheus-operated.monitoring:9090",
                    "query": t.query,
                    "threshold": f"{t.threshold:g}",
                    "activationThreshold": f"{t.activation_threshold:g}",
                },
            }
            for t in k.triggers
        ]
        return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": cfg.name}, "spec": spec}
    h = cfg.effective_hpa
    hspec: dict[str, Any] = {
        "scaleTargetRef": ref,
        "minReplicas": h.min_replicas,
        "maxReplicas": h.max_replicas,
        "metrics": [_metric_doc(m) for m in h.metrics],
    }
    if h.behavior is not None:
        hspec["behavior"] = _behavior_doc(h.behavior)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": cfg.name},
        "spec": hspec,
    }


def _metric_doc(m: MetricSpec) -> dict[str, Any]:
    key = m.type.value[0].lower() + m.type.value[1:]
    if m.target_type is MetricTargetType.UTILIZATION:
        target: dict[str, Any] = {"type": "Utilization", "averageUtilization": m.target}
    else:
        field_name = "value" if m.target_type is MetricTargetType.VALUE else "averageValue"
        target = {"type": m.target_type.value, field_name: format_milli(m.target)}
    body: dict[str, Any] = {"metric": {"name": m.name}, "target": target}
    if m.type in (MetricSourceType.RESOURCE, MetricSourceType.CONTAINER_RESOURCE):
        body = {"name": m.name, "target": target}
    return {"type": m.type.value, key: body}


def _behavior_doc(b: Behavior) -> dict[str, Any]:
    def rules(r: ScalingRules) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if r.stabilization_window_s is not None:
            d["stabilizationWindowSeconds"] = r.stabilization_window_s
        d["selectPolicy"] = r.select_policy.value
        d["policies"] = [{"type": p.type.value, "value": p.value, "periodSeconds": p.period_s} for p in r.policies]
        if r.tolerance is not None:
            d["tolerance"] = f"{r.tolerance:g}"
        return d

    return {"scaleUp": rules(b.scale_up), "scaleDown": rules(b.scale_down)}
