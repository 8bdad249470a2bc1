"""inferline.yaml (with its `deploy:` section) -> the Helm chart's values: one source for gateway and engines.

What is written once and where it lands:
- models, fallbacks, routing, admission, limits, cache -> `gateway.config` (the gateway's ConfigMap, verbatim);
- a deployed model's engine limits (its vllm backend's max_num_seqs, kv_admit_ratio, scheduling_priority,
  upstream_model) -> the engine's vLLM arguments AND the gateway's discovery of those engines (the chart
  writes `discovery` from the same values, so the two cannot disagree);
- `deploy:` -> images, GPUs, placement, probes, drain, cache volume, autoscaling, monitoring.
The deployed models' static backends (a laptop's http://127.0.0.1:8000) are left out of the cluster's
config: in the cluster their engines are found by DNS. Remote `openai` backends are kept.
"""

from __future__ import annotations

import re
from typing import Any

from inferline.backends.discovery import valid_dns_name
from inferline.config import BackendConfig, BackendKind, InferlineConfig, ModelConfig
from inferline.deploy.config import (
    GATEWAY_QUEUE_TARGET,
    GPU_UTIL_SCALE_UP,
    KV_USAGE_TARGET,
    QUEUE_DEPTH_TARGET,
    AutoscalingConfig,
    AutoscalingMode,
    CacheVolume,
    DeployConfig,
    EngineDeployConfig,
    ImageRef,
    RedisMode,
    ScalingRules,
)

__all__ = ["RenderError", "Rendered", "engine_name", "render_values"]

_MAX_SERVICE_NAME = 63  # a Service name is one DNS label


class RenderError(ValueError):
    """A config that cannot be deployed; the message lists every problem with its field path."""


class Rendered:
    """The chart's values, plus notes for the operator (decisions the render made on their behalf)."""

    def __init__(self, values: dict[str, Any], notes: list[str]) -> None:
        self.values = values
        self.notes = notes


def engine_name(model: str) -> str:
    """A model name as a DNS label: 'meta-llama/Llama-3.1-8B' -> 'meta-llama-llama-3-1-8b'."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return slug[:40].rstrip("-") or "model"


def service_name(deploy: DeployConfig, model: str) -> str:
    return f"{deploy.name}-{engine_name(model)}-engine"


def _image(ref: ImageRef) -> dict[str, Any]:
    out: dict[str, Any] = {"repository": ref.repository, "tag": ref.tag, "pullPolicy": ref.pull_policy}
    if ref.digest:
        out["digest"] = ref.digest
    return out


def _rules(r: ScalingRules) -> dict[str, Any]:
    policies = []
    if r.max_pods_per_period is not None:
        policies.append({"type": "Pods", "value": r.max_pods_per_period, "periodSeconds": r.period_s})
    if r.max_percent_per_period is not None:
        policies.append({"type": "Percent", "value": r.max_percent_per_period, "periodSeconds": r.period_s})
    return {"stabilizationWindowSeconds": r.stabilization_window_s, "selectPolicy": "Max", "policies": policies}


def _autoscaling(a: AutoscalingConfig) -> dict[str, Any]:
    def metric(target: float | None, default: float, **extra: Any) -> dict[str, Any]:
        # a metric not used keeps a valid figure, so switching it on in an override is one key
        return {"enabled": target is not None, "target": target if target is not None else default, **extra}

    return {
        "mode": a.mode.value,
        "replicas": a.replicas,
        "minReplicas": a.min_replicas,
        "maxReplicas": a.max_replicas,
        "metrics": {
            "gpuUtilization": metric(
                a.gpu_utilization_target, GPU_UTIL_SCALE_UP, scaleDownBelow=a.gpu_utilization_scale_down or 0
            ),
            "queueDepth": metric(a.queue_depth_target, QUEUE_DEPTH_TARGET),
            "kvCacheUsage": metric(a.kv_cache_usage_target, KV_USAGE_TARGET),
            "gatewayQueue": metric(a.gateway_queue_target, GATEWAY_QUEUE_TARGET),
        },
        "behavior": {"scaleUp": _rules(a.scale_up), "scaleDown": _rules(a.scale_down)},
        "keda": {"pollingIntervalSeconds": a.polling_interval_s},
    }


def _engine_template(model: ModelConfig) -> BackendConfig:
    """The backend whose limits describe this model's engines: its first vllm backend, else the defaults."""
    for b in model.backends:
        if b.kind is BackendKind.VLLM:
            return b
    return BackendConfig(name=f"{engine_name(model.name)}-engine", kind=BackendKind.VLLM, url="http://engine:8000")


def _engine_values(name: str, model: ModelConfig, e: EngineDeployConfig) -> dict[str, Any]:
    t = _engine_template(model)
    weights = e.weights or t.upstream_model or model.name
    cache = e.model_cache
    return {
        "name": name,
        "model": model.name,
        "image": _image(e.image),
        "weights": weights,
        "servedModelName": t.upstream_model or model.name,
        "gpus": e.gpus,
        "tensorParallelSize": e.tensor_parallel_size or e.gpus,
        "gpuMemoryUtilization": e.gpu_memory_utilization,
        "maxNumSeqs": t.max_num_seqs,
        "enableChunkedPrefill": e.enable_chunked_prefill,
        "schedulingPolicy": "priority" if t.scheduling_priority else "fcfs",
        "maxModelLen": e.max_model_len or 0,
        "kvAdmitRatio": t.kv_admit_ratio,
        "extraArgs": list(e.extra_args),
        "env": [{"name": k, "value": v} for k, v in sorted(e.env.items())],
        "hfTokenSecret": e.hf_token_secret or "",
        "port": e.port,
        "resources": {"cpu": e.cpu, "memory": e.memory},
        "shmSize": e.shm_size,
        "nodeSelector": dict(e.node_selector),
        "tolerations": list(e.tolerations),
        "affinity": dict(e.affinity),
        "runtimeClassName": e.runtime_class_name or "",
        "startupTimeoutSeconds": e.startup_timeout_s,
        "drain": {"preStopSleepSeconds": e.prestop_sleep_s, "shutdownTimeoutSeconds": e.shutdown_timeout_s},
        "discovery": {"intervalSeconds": e.discovery_interval_s},
        "modelCache": {
            "type": {CacheVolume.PVC: "pvc", CacheVolume.HOST_PATH: "hostPath", CacheVolume.EMPTY_DIR: "emptyDir"}[
                cache.type
            ],
            "size": cache.size,
            "storageClassName": cache.storage_class or "",
            "accessMode": cache.access_mode,
            "existingClaim": cache.existing_claim or "",
            "hostPath": cache.host_path or "",
            "mountPath": cache.mount_path,
        },
        "autoscaling": _autoscaling(e.autoscaling),
    }


def _gateway_config(raw: dict[str, Any], cfg: InferlineConfig, deployed: set[str], notes: list[str]) -> dict[str, Any]:
    """The gateway's config for the cluster: what the user wrote, minus `deploy` and minus local engines."""
    data = {k: v for k, v in raw.items() if k != "deploy"}
    raw_models = data.get("models")
    if raw_models is None:  # the default model was not written out: write it, the cluster's gateway needs it
        raw_models = [m.model_dump(mode="json", exclude_defaults=True) for m in cfg.models]
    models_out: list[dict[str, Any]] = []
    for m, rm in zip(cfg.models, raw_models, strict=True):
        rm = dict(rm)
        if m.name in deployed:
            dropped = [b.name for b in m.backends if b.kind is not BackendKind.OPENAI]
            if dropped:
                notes.append(
                    f"model {m.name}: backends {', '.join(dropped)} stay out of the cluster's config "
                    "(its engines are found through their headless Service)"
                )
            rm["backends"] = [rb for rb in rm.get("backends") or [] if rb.get("name") not in dropped]
            rm.pop("discovery", None)  # the chart writes it from the engine's values
        elif any(b.kind is BackendKind.EMBEDDED for b in m.backends):
            notes.append(f"model {m.name}: the embedded engine would run inside every gateway pod (CPU only)")
        models_out.append(rm)
    data["models"] = models_out
    return data


def render_values(raw: dict[str, Any], cfg: InferlineConfig) -> Rendered:
    """Chart values for the config `raw` (as written; `cfg` is it validated); RenderError lists every problem."""
    d = cfg.deploy
    if d is None:
        raise RenderError("`deploy`: missing; add a `deploy:` section with at least one model under `deploy.models`")
    errors: list[str] = []
    notes: list[str] = []
    names = {m.name: m for m in cfg.models}
    if not d.models:
        errors.append("`deploy.models`: empty; name at least one model of `models:` to run on GPUs")
    seen: dict[str, str] = {}
    for model_name, e in d.models.items():
        path = f"deploy.models.{model_name}"
        model = names.get(model_name)
        if model is None:
            errors.append(f"`{path}`: no model {model_name!r} in `models` ({', '.join(sorted(names))})")
            continue
        name = engine_name(model_name)
        if name in seen:
            errors.append(f"`{path}`: its object name {name!r} collides with model {seen[name]!r}'s")
        seen[name] = model_name
        svc = service_name(d, model_name)
        if len(svc) > _MAX_SERVICE_NAME:
            errors.append(f"`{path}`: Service name {svc!r} is longer than 63 characters; shorten `deploy.name`")
        if model.discovery is not None:
            short = model.discovery.dns_name.split(".")[0]
            if short != svc:
                idx = cfg.models.index(model)
                errors.append(
                    f"`models[{idx}].discovery.dns_name`: {model.discovery.dns_name!r} never resolves in the "
                    f"cluster: this model's engines are behind the Service {svc!r} (remove `discovery`; the "
                    "chart writes it)"
                )
        if model.discovery is not None and model.discovery.port != e.port:
            errors.append(f"`{path}.port`: {e.port} differs from models[].discovery.port {model.discovery.port}")
        mode = e.autoscaling.mode
        gpu_scaling = mode is not AutoscalingMode.NONE and e.autoscaling.gpu_utilization_target is not None
        if gpu_scaling and not d.monitoring.dcgm_service_monitor:
            notes.append(
                f"model {model_name}: scaling on GPU utilization needs DCGM_FI_DEV_GPU_UTIL in Prometheus "
                "(deploy.monitoring.dcgm_service_monitor is off: scrape the DCGM exporter yourself)"
            )
    for m in cfg.models:
        if m.name not in d.models and m.discovery is not None and not valid_dns_name(m.discovery.dns_name):
            errors.append(f"`models[{cfg.models.index(m)}].discovery.dns_name`: not a DNS name")
    key_envs = [k.key_env for k in cfg.limits.keys if k.key_env]
    if key_envs and not d.gateway.api_keys_secret:
        errors.append(
            "`deploy.gateway.api_keys_secret`: limits.keys read "
            f"{', '.join(key_envs)} from the environment; name the Secret that holds them"
        )
    if d.redis.mode is RedisMode.NONE and cfg.limits.store == "memory" and cfg.limits.keys:
        notes.append(
            f"limits are kept in each gateway's memory: with {d.gateway.replicas} replicas every limit is "
            f"{d.gateway.replicas}x looser (deploy.redis.mode: in_chart shares them)"
        )
    if errors:
        raise RenderError(f"{len(errors)} problem(s):\n" + "\n".join(f"  - {e}" for e in errors))

    deployed = set(d.models)
    engines = [_engine_values(engine_name(n), names[n], e) for n, e in d.models.items()]
    gw = d.gateway
    mon = d.monitoring
    values: dict[str, Any] = {
        "fullnameOverride": d.name,
        "clusterDomain": d.cluster_domain,
        "gateway": {
            "replicas": gw.replicas,
            "image": _image(gw.image),
            "port": gw.port,
            "resources": {"cpu": gw.cpu, "memory": gw.memory},
            "apiKeysSecret": gw.api_keys_secret or "",
            "service": {"type": gw.service_type},
            "nodeSelector": dict(gw.node_selector),
            "tolerations": list(gw.tolerations),
            "config": _gateway_config(raw, cfg, deployed, notes),
        },
        "redis": {
            "mode": {RedisMode.IN_CHART: "inChart", RedisMode.EXTERNAL: "external", RedisMode.NONE: "none"}[
                d.redis.mode
            ],
            "url": d.redis.url or "",
            "image": _image(d.redis.image),
        },
        "engines": engines,
        "monitoring": {
            "labels": dict(mon.labels),
            "serviceMonitors": {"enabled": mon.service_monitors},
            "dcgm": {
                "serviceMonitor": mon.dcgm_service_monitor,
                "namespace": mon.dcgm_namespace,
                "selector": dict(mon.dcgm_selector),
            },
            "prometheusRule": {"enabled": mon.prometheus_rule},
            "dashboard": {"enabled": mon.dashboard},
            "prometheus": {"url": mon.prometheus_url},
            "prometheusAdapter": {"namespace": mon.adapter_namespace or ""},
        },
    }
    return Rendered(values, notes)
