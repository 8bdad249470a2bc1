"""The chart's values.schema.json, built here so `gateway.config` is checked against InferlineConfig itself.

`inferline deploy schema > deploy/helm/inferline/values.schema.json`; tests/deploy keeps the file in sync.
Every object is closed (additionalProperties: false), so a misspelt value fails `helm lint` / `helm install`.
"""

from __future__ import annotations

import json
from typing import Any

from inferline.config import InferlineConfig

__all__ = ["values_schema"]

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
_LABEL = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"


def _obj(desc: str, props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "description": desc, "additionalProperties": False, "properties": props}
    if required:
        out["required"] = required
    return out


def _s(desc: str, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": desc, **kw}


def _i(desc: str, minimum: int | None = None, maximum: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "description": desc}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


def _n(desc: str, **kw: Any) -> dict[str, Any]:
    return {"type": "number", "description": desc, **kw}


def _b(desc: str) -> dict[str, Any]:
    return {"type": "boolean", "description": desc}


def _map(desc: str) -> dict[str, Any]:
    return {"type": "object", "description": desc, "additionalProperties": {"type": "string"}}


def _any_obj(desc: str) -> dict[str, Any]:
    return {"type": "object", "description": desc}


def _image(desc: str) -> dict[str, Any]:
    return _obj(
        desc,
        {
            "repository": _s("Image repository.", minLength=1),
            "tag": _s("Exact version tag (never latest).", minLength=1, **{"not": {"const": "latest"}}),
            "digest": _s("Optional sha256 digest.", pattern=r"^sha256:[0-9a-f]{64}$"),
            "pullPolicy": _s("imagePullPolicy.", enum=["Always", "IfNotPresent", "Never"]),
        },
        ["repository", "tag"],
    )


def _resources(desc: str) -> dict[str, Any]:
    return _obj(
        desc,
        {"cpu": _s("CPU request.", pattern=_QUANTITY), "memory": _s("Memory request and limit.", pattern=_QUANTITY)},
        ["cpu", "memory"],
    )


def _rules(desc: str) -> dict[str, Any]:
    policy = _obj(
        "A scaling policy.",
        {
            "type": _s("Pods or Percent.", enum=["Pods", "Percent"]),
            "value": _i("Pods or percent per period.", 1),
            "periodSeconds": _i("Period (s).", 1, 1800),
        },
        ["type", "value", "periodSeconds"],
    )
    return _obj(
        desc,
        {
            "stabilizationWindowSeconds": _i("Stabilization window (s).", 0, 3600),
            "selectPolicy": _s("Max, Min or Disabled.", enum=["Max", "Min", "Disabled"]),
            "policies": {"type": "array", "description": "Scaling policies.", "items": policy, "minItems": 1},
        },
        ["stabilizationWindowSeconds", "policies"],
    )


def _metric(desc: str, maximum: float | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    target: dict[str, Any] = {"type": "number", "description": "Target per engine replica.", "exclusiveMinimum": 0}
    if maximum is not None:
        target["maximum"] = maximum
    return _obj(desc, {"enabled": _b("Use this metric."), "target": target, **(extra or {})}, ["enabled", "target"])


def _engine() -> dict[str, Any]:
    autoscaling = _obj(
        "Replicas and scaling of this model's engines.",
        {
            "mode": _s("hpa | keda | none (one value: never both for one Deployment).", enum=["hpa", "keda", "none"]),
            "replicas": _i("Fixed replicas (mode none).", 0, 1000),
            "minReplicas": _i("Fewest replicas.", 1, 1000),
            "maxReplicas": _i("Most replicas.", 1, 1000),
            "metrics": _obj(
                "Scaling signals; the largest recommendation wins.",
                {
                    "gpuUtilization": _metric(
                        "Mean GPU utilization % (DCGM_FI_DEV_GPU_UTIL).",
                        100,
                        {
                            "scaleDownBelow": _n(
                                "Remove engines only below this % (HPA tolerance, k8s >= 1.33).", minimum=0
                            )
                        },
                    ),
                    "queueDepth": _metric("Requests waiting per engine (vllm:num_requests_waiting)."),
                    "kvCacheUsage": _metric("KV-cache use per engine, 0-1 (vllm:kv_cache_usage_perc).", 1),
                    "gatewayQueue": _metric("Requests held by the gateways per engine (inferline_queue_depth)."),
                },
                ["gpuUtilization", "queueDepth", "kvCacheUsage", "gatewayQueue"],
            ),
            "behavior": _obj(
                "HPA behavior.",
                {"scaleUp": _rules("Adding engines."), "scaleDown": _rules("Removing engines.")},
                ["scaleUp", "scaleDown"],
            ),
            "keda": _obj("KEDA settings.", {"pollingIntervalSeconds": _i("Trigger polling interval (s).", 1, 600)}),
        },
        ["mode", "minReplicas", "maxReplicas", "metrics", "behavior"],
    )
    cache = _obj(
        "Model weights cache (HF_HOME lives in it).",
        {
            "type": _s("pvc | hostPath | emptyDir.", enum=["pvc", "hostPath", "emptyDir"]),
            "size": _s("PVC size / emptyDir limit.", pattern=_QUANTITY),
            "storageClassName": _s("PVC storage class (empty: the cluster's default)."),
            "accessMode": _s(
                "PVC access mode.", enum=["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]
            ),
            "existingClaim": _s("Use this PVC instead of creating one."),
            "hostPath": _s("Node directory (type hostPath)."),
            "mountPath": _s("Mount path in the engine.", pattern="^/"),
        },
        ["type", "mountPath"],
    )
    props = {
        "name": _s("Object name suffix (a DNS label).", pattern=_LABEL),
        "model": _s("The gateway model it serves (gateway.config.models[].name).", minLength=1),
        "image": _image("vLLM image, pinned."),
        "weights": _s("What vLLM loads: a Hugging Face id or a path.", minLength=1),
        "servedModelName": _s("--served-model-name (what the gateway sends as `model`).", minLength=1),
        "gpus": _i("GPUs per replica (nvidia.com/gpu).", 1, 64),
        "tensorParallelSize": _i("--tensor-parallel-size.", 1, 64),
        "gpuMemoryUtilization": _n("--gpu-memory-utilization.", exclusiveMinimum=0, maximum=1),
        "maxNumSeqs": _i("--max-num-seqs.", 1),
        "enableChunkedPrefill": _b("--enable-chunked-prefill."),
        "schedulingPolicy": _s("--scheduling-policy.", enum=["fcfs", "priority"]),
        "maxModelLen": _i("--max-model-len (0: the model's).", 0),
        "kvAdmitRatio": _n("Gateway dispatches only below this KV use.", exclusiveMinimum=0, maximum=1),
        "extraArgs": {"type": "array", "description": "More vLLM arguments.", "items": {"type": "string"}},
        "env": {
            "type": "array",
            "description": "Extra environment (name/value).",
            "items": _obj("A variable.", {"name": _s("Name.", minLength=1), "value": _s("Value.")}, ["name"]),
        },
        "hfTokenSecret": _s("Secret whose keys (HF_TOKEN) become env variables."),
        "port": _i("Engine port.", 1, 65535),
        "resources": _resources("CPU and memory of an engine pod."),
        "shmSize": _s("/dev/shm size.", pattern=_QUANTITY),
        "nodeSelector": _map("nodeSelector."),
        "tolerations": {"type": "array", "description": "Tolerations.", "items": {"type": "object"}},
        "affinity": _any_obj("Affinity."),
        "runtimeClassName": _s("runtimeClassName (e.g. nvidia)."),
        "startupTimeoutSeconds": _i("Longest model download + load.", 60, 7200),
        "drain": _obj(
            "Ending an engine without losing its streams.",
            {
                "preStopSleepSeconds": _i("Serve on after leaving the Service (> discovery interval).", 0, 300),
                "shutdownTimeoutSeconds": _i("vLLM --shutdown-timeout.", 0, 3600),
            },
            ["preStopSleepSeconds", "shutdownTimeoutSeconds"],
        ),
        "discovery": _obj(
            "How the gateways find these engines.",
            {"intervalSeconds": _n("Re-resolve period (s).", exclusiveMinimum=0, maximum=300)},
            ["intervalSeconds"],
        ),
        "modelCache": cache,
        "autoscaling": autoscaling,
    }
    return _obj("One model's vLLM engines.", props, list(props))


def values_schema() -> dict[str, Any]:
    config_schema = InferlineConfig.model_json_schema()
    defs = config_schema.pop("$defs", {})
    config_schema["properties"].pop("deploy", None)
    for name in [n for n in defs if n.endswith("DeployConfig") or n in _DEPLOY_ONLY]:
        defs.pop(name)
    config_schema["description"] = (
        "The gateway's inferline.yaml (docs/config.md); the chart adds engines' discovery, listen address, Redis."
    )
    gateway = _obj(
        "The gateway Deployment, its config, Service and PodDisruptionBudget.",
        {
            "replicas": _i("Gateway replicas (at least 2).", 2, 100),
            "image": _image("Gateway image, pinned."),
            "port": _i("Gateway port.", 1, 65535),
            "resources": _resources("CPU and memory of a gateway pod."),
            "apiKeysSecret": _s("Existing Secret whose keys become env variables (limits.keys[].key_env)."),
            "service": _obj(
                "The gateway Service.",
                {"type": _s("Service type.", enum=["ClusterIP", "NodePort", "LoadBalancer"])},
            ),
            "podDisruptionBudget": _obj(
                "PodDisruptionBudget.", {"minAvailable": _i("Gateways kept during voluntary disruptions.", 1)}
            ),
            "preStopSleepSeconds": _i("Serve on after leaving the Service, before SIGTERM.", 0, 120),
            "nodeSelector": _map("nodeSelector."),
            "tolerations": {"type": "array", "description": "Tolerations.", "items": {"type": "object"}},
            "config": config_schema,
        },
        ["replicas", "image", "port", "config"],
    )
    redis = _obj(
        "Shared limit store.",
        {
            "mode": _s("inChart | external | none.", enum=["inChart", "external", "none"]),
            "url": _s("redis://host:port/db (mode external).", pattern="^(|rediss?://.+)$"),
            "image": _image("Redis image (mode inChart)."),
            "resources": _resources("CPU and memory of the Redis pod."),
        },
        ["mode"],
    )
    monitoring = _obj(
        "Prometheus operator objects, Grafana dashboard, autoscaling data sources.",
        {
            "labels": _map("Labels on ServiceMonitors and the PrometheusRule."),
            "serviceMonitors": _obj(
                "Gateway and engine ServiceMonitors (when the CRD exists).",
                {"enabled": _b("Render them."), "interval": _s("Scrape interval.", pattern=r"^[0-9]+(ms|s|m)$")},
            ),
            "dcgm": _obj(
                "DCGM exporter ServiceMonitor.",
                {
                    "serviceMonitor": _b("Render it (when the CRD exists)."),
                    "namespace": _s("Exporter namespace.", minLength=1),
                    "selector": _map("Exporter Service labels."),
                    "port": _s("Exporter Service port name.", minLength=1),
                },
            ),
            "prometheusRule": _obj("Alert rules (when the CRD exists).", {"enabled": _b("Render it.")}),
            "dashboard": _obj(
                "Grafana dashboard ConfigMap.", {"enabled": _b("Render it."), "labels": _map("Sidecar labels.")}
            ),
            "prometheus": _obj("Prometheus for KEDA.", {"url": _s("Prometheus URL.", pattern="^https?://")}),
            "prometheusAdapter": _obj(
                "prometheus-adapter rules ConfigMap.", {"namespace": _s("Its namespace (empty: the release's).")}
            ),
        },
    )
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "inferline chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "nameOverride": _s("Chart name override."),
            "fullnameOverride": _s("Prefix of every object name (at most 40 characters)."),
            "clusterDomain": _s("Cluster DNS domain.", minLength=1),
            "commonLabels": _map("Labels on every object."),
            "global": _any_obj("Helm globals (unused)."),
            "gateway": gateway,
            "redis": redis,
            "engines": {"type": "array", "description": "vLLM engines, one entry per model.", "items": _engine()},
            "monitoring": monitoring,
        },
        "required": ["gateway", "redis", "engines", "monitoring"],
        "$defs": defs,
    }
    return schema


_DEPLOY_ONLY = {
    "AutoscalingConfig",
    "ImageRef",
    "ModelCacheConfig",
    "MonitoringConfig",
    "ScalingRules",
    "AutoscalingMode",
    "CacheVolume",
    "RedisMode",
}


def render_schema() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=False) + "\n"
