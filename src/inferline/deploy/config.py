"""The `deploy:` section of inferline.yaml: what only a Kubernetes deployment needs (images, GPUs, scaling, storage).

Models, their backends' limits (max_num_seqs, KV admission, priority scheduling) and API keys are NOT here:
`inferline deploy render` reads them from the rest of the same file, so each is written once. The gateway
ignores this section. Defaults are the seed's figures (min 2 / max 10 engines, scale up at 75 % GPU
utilization, down below 30 % after a 300 s window, --gpu-memory-utilization 0.9).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_GATEWAY_IMAGE",
    "DEFAULT_VLLM_IMAGE",
    "AutoscalingConfig",
    "AutoscalingMode",
    "CacheVolume",
    "DeployConfig",
    "EngineDeployConfig",
    "GatewayDeployConfig",
    "ImageRef",
    "ModelCacheConfig",
    "MonitoringConfig",
    "RedisDeployConfig",
    "RedisMode",
    "ScalingRules",
]

# Defaults, named once.
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"  # checked: v0.33.0's flags (--enable-log-requests, not --disable-...)
DEFAULT_GATEWAY_IMAGE = "ghcr.io/inferline/inferline:0.1.0"
DEFAULT_REDIS_IMAGE = "redis:7.4.2-alpine"
MIN_REPLICAS = 2  # seed note
MAX_REPLICAS = 10
GPU_UTIL_SCALE_UP = 75.0  # seed note: scale up at 70-75 % GPU utilization
GPU_UTIL_SCALE_DOWN = 30.0  # seed note: scale down at 30 % ...
SCALE_DOWN_WINDOW_S = 300  # ... after a 300 s stabilization window
QUEUE_DEPTH_TARGET = 5.0  # waiting requests per engine (vLLM's own queue; production-stack's default threshold)
KV_USAGE_TARGET = 0.80  # below the gateway's 85 % KV admission, so engines are added before it starts holding back
GATEWAY_QUEUE_TARGET = 8.0  # requests held in the gateway's queue per engine replica
GPU_MEMORY_UTILIZATION = 0.9  # seed note
STARTUP_TIMEOUT_S = 1800  # pulling and loading a large model takes minutes, not the 30 s of a default probe
SHUTDOWN_TIMEOUT_S = 120  # vLLM --shutdown-timeout: in-flight requests get this long after SIGTERM
PRESTOP_SLEEP_S = 15  # > discovery interval + DNS TTL: gateways stop sending before the engine is signalled
DISCOVERY_INTERVAL_S = 5.0

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _quantity(v: str) -> str:
    if not _QUANTITY.match(v):
        raise ValueError(f"{v!r} is not a Kubernetes quantity (e.g. 500m, 4, 16Gi)")
    return v


class ImageRef(_Section):
    """A container image pinned by tag (never `latest`) or digest. YAML may give it as one string."""

    repository: str = Field(..., min_length=1, description="Image repository, e.g. vllm/vllm-openai.")
    tag: str = Field(..., min_length=1, description="Exact version tag, e.g. v0.33.0 (never latest).")
    digest: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{64}$", description="Optional sha256 digest.")
    pull_policy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$", description="imagePullPolicy.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            ref, _, digest = data.partition("@")
            repo, sep, tag = ref.rpartition(":")
            if not sep or "/" in tag:
                raise ValueError(f"image {data!r} has no tag: pin an exact version, e.g. {data}:v1.2.3")
            return {"repository": repo, "tag": tag, **({"digest": digest} if digest else {})}
        return data

    @field_validator("tag")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v == "latest":
            raise ValueError("`latest` is not a pinned version: use an exact tag such as v0.33.0")
        return v

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


class AutoscalingMode(StrEnum):
    HPA = "hpa"  # autoscaling/v2 HPA on Pods/External metrics served by prometheus-adapter
    KEDA = "keda"  # a KEDA ScaledObject with Prometheus triggers (KEDA owns the HPA)
    NONE = "none"  # fixed `replicas`


class ScalingRules(_Section):
    """One direction of the HPA `behavior`: a stabilization window and how fast replicas may change."""

    stabilization_window_s: int = Field(..., ge=0, le=3600, description="Stabilization window (seconds).")
    max_pods_per_period: int | None = Field(None, ge=1, description="At most this many pods added/removed per period.")
    max_percent_per_period: int | None = Field(
        None, ge=1, description="At most this percentage of current pods per period."
    )
    period_s: int = Field(60, ge=1, le=1800, description="Period of the two policies (seconds).")

    @model_validator(mode="after")
    def _one_policy(self) -> ScalingRules:
        if self.max_pods_per_period is None and self.max_percent_per_period is None:
            raise ValueError("set max_pods_per_period or max_percent_per_period (or both)")
        return self


class AutoscalingConfig(_Section):
    """Per model: how many engines, on which signals. A metric set to null is not used."""

    mode: AutoscalingMode = Field(AutoscalingMode.HPA, description="hpa | keda | none (never both for one model).")
    min_replicas: int = Field(MIN_REPLICAS, ge=1, le=1000, description="Fewest engine replicas.")
    max_replicas: int = Field(MAX_REPLICAS, ge=1, le=1000, description="Most engine replicas.")
    replicas: int = Field(MIN_REPLICAS, ge=0, le=1000, description="Fixed replica count when mode is none.")
    gpu_utilization_target: float | None = Field(
        GPU_UTIL_SCALE_UP,
        description="Scale up when the engines' mean GPU utilization (DCGM_FI_DEV_GPU_UTIL, %) exceeds this.",
    )
    gpu_utilization_scale_down: float | None = Field(
        GPU_UTIL_SCALE_DOWN,
        description="Remove engines only below this GPU utilization (%): the HPA's scale-down tolerance "
        "(Kubernetes >= 1.33 with HPAConfigurableTolerance; beta from 1.35). Null: the cluster's 10 %.",
    )
    queue_depth_target: float | None = Field(
        QUEUE_DEPTH_TARGET, description="Requests waiting in each engine's own queue (vllm:num_requests_waiting)."
    )
    kv_cache_usage_target: float | None = Field(
        KV_USAGE_TARGET, description="Mean KV-cache use of the engines, 0-1 (vllm:kv_cache_usage_perc)."
    )
    gateway_queue_target: float | None = Field(
        GATEWAY_QUEUE_TARGET,
        description="Requests the gateways hold for this model per engine replica (inferline_queue_depth, External).",
    )
    scale_up: ScalingRules = Field(
        default_factory=lambda: ScalingRules(
            stabilization_window_s=0, max_pods_per_period=4, max_percent_per_period=100, period_s=60
        ),
        description="How fast engines are added (default: no window; the larger of +4 pods or +100 % a minute).",
    )
    scale_down: ScalingRules = Field(
        default_factory=lambda: ScalingRules(
            stabilization_window_s=SCALE_DOWN_WINDOW_S, max_pods_per_period=1, period_s=60
        ),
        description="How fast engines are removed (default: after a 300 s window, one pod a minute).",
    )
    polling_interval_s: int = Field(15, ge=1, le=600, description="KEDA: how often the triggers are evaluated.")

    @model_validator(mode="after")
    def _consistent(self) -> AutoscalingConfig:
        errors: list[str] = []
        if self.min_replicas > self.max_replicas:
            errors.append(f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})")
        g = self.gpu_utilization_target
        if g is not None and not 0 < g <= 100:
            errors.append(f"gpu_utilization_target must be in (0, 100] percent; got {g}")
        d = self.gpu_utilization_scale_down
        if d is not None:
            if g is None:
                errors.append("gpu_utilization_scale_down needs gpu_utilization_target")
            elif not 0 < d < g:
                errors.append(f"gpu_utilization_scale_down must be in (0, gpu_utilization_target={g}); got {d}")
        kv = self.kv_cache_usage_target
        if kv is not None and not 0 < kv <= 1:
            errors.append(f"kv_cache_usage_target is a ratio in (0, 1]; got {kv}")
        for name in ("queue_depth_target", "gateway_queue_target"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                errors.append(f"{name} must be above 0; got {v}")
        if self.mode is not AutoscalingMode.NONE and not self.metrics():
            errors.append(f"mode {self.mode.value} needs at least one metric target")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def metrics(self) -> list[str]:
        names = ("gpu_utilization_target", "queue_depth_target", "kv_cache_usage_target", "gateway_queue_target")
        return [n for n in names if getattr(self, n) is not None]

    @property
    def scale_down_tolerance(self) -> float | None:
        """HPA tolerance that keeps engines until utilization falls below the scale-down figure."""
        g, d = self.gpu_utilization_target, self.gpu_utilization_scale_down
        if g is None or d is None:
            return None
        return round(1 - d / g, 4)


class CacheVolume(StrEnum):
    PVC = "pvc"  # a PersistentVolumeClaim the chart creates (or an existing one)
    HOST_PATH = "host_path"  # a directory on the GPU node (per-node cache; PSA baseline forbids it)
    EMPTY_DIR = "empty_dir"  # per pod: weights downloaded at every start


class ModelCacheConfig(_Section):
    """Where model weights are cached, so a new replica does not download them again."""

    type: CacheVolume = Field(CacheVolume.PVC, description="pvc | host_path | empty_dir.")
    size: str = Field("200Gi", description="PVC size (or emptyDir size limit).")
    storage_class: str | None = Field(None, description="PVC storage class; default: the cluster's.")
    access_mode: str = Field(
        "ReadWriteMany",
        pattern="^(ReadWriteOnce|ReadWriteMany|ReadOnlyMany|ReadWriteOncePod)$",
        description="PVC access mode; every replica mounts the same claim, so ReadWriteMany unless all fit one node.",
    )
    existing_claim: str | None = Field(None, description="Use this existing PVC instead of creating one.")
    host_path: str | None = Field(None, description="Directory on the node (type host_path).")
    mount_path: str = Field("/models", description="Where the cache is mounted; HF_HOME points into it.")

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        return _quantity(v)

    @model_validator(mode="after")
    def _host_path_given(self) -> ModelCacheConfig:
        if self.type is CacheVolume.HOST_PATH and not self.host_path:
            raise ValueError("type host_path needs `host_path`")
        return self


class EngineDeployConfig(_Section):
    """One model's vLLM engines: image, GPUs, engine arguments, placement, probes, drain, cache, scaling."""

    image: ImageRef = Field(..., description=f"vLLM image pinned by tag, e.g. {DEFAULT_VLLM_IMAGE}.")
    gpus: int = Field(..., ge=1, le=64, description="GPUs per replica (nvidia.com/gpu requests = limits).")
    weights: str | None = Field(
        None,
        description="What vLLM loads (Hugging Face id or a path in the model cache). Default: the model's "
        "vllm backend `upstream_model`, else the model name.",
    )
    tensor_parallel_size: int | None = Field(None, ge=1, description="--tensor-parallel-size; default: gpus.")
    gpu_memory_utilization: float = Field(
        GPU_MEMORY_UTILIZATION, gt=0, le=1, description="--gpu-memory-utilization (10 % headroom by default)."
    )
    enable_chunked_prefill: bool = Field(True, description="--enable-chunked-prefill.")
    max_model_len: int | None = Field(None, ge=16, description="--max-model-len; default: the model's.")
    extra_args: list[str] = Field(default_factory=list, description="More vLLM arguments, appended as given.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables of the engine.")
    hf_token_secret: str | None = Field(
        None, description="Secret (key HF_TOKEN) for gated Hugging Face models; its keys become env variables."
    )
    port: int = Field(8000, ge=1, le=65535, description="Engine port (the headless Service's too).")
    cpu: str = Field("8", description="CPU request.")
    memory: str = Field("64Gi", description="Memory request and limit.")
    shm_size: str = Field("16Gi", description="Size of /dev/shm (a memory emptyDir: NCCL and tensor parallel).")
    node_selector: dict[str, str] = Field(default_factory=dict, description="nodeSelector of the engine pods.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        description="Tolerations (default: the usual GPU node taint).",
    )
    affinity: dict[str, Any] = Field(default_factory=dict, description="Affinity of the engine pods.")
    runtime_class_name: str | None = Field(None, description="runtimeClassName, e.g. nvidia.")
    startup_timeout_s: int = Field(
        STARTUP_TIMEOUT_S, ge=60, le=7200, description="Longest model download + load before the pod is restarted."
    )
    shutdown_timeout_s: int = Field(
        SHUTDOWN_TIMEOUT_S, ge=0, le=3600, description="vLLM --shutdown-timeout: in-flight requests' time to finish."
    )
    prestop_sleep_s: int = Field(
        PRESTOP_SLEEP_S,
        ge=0,
        le=300,
        description="Before SIGTERM the engine keeps serving this long, so every gateway's discovery drops it first.",
    )
    discovery_interval_s: float = Field(
        DISCOVERY_INTERVAL_S, gt=0, le=300, description="How often gateways re-resolve the engines' Service."
    )
    model_cache: ModelCacheConfig = Field(default_factory=ModelCacheConfig, description="Weights cache volume.")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="Replicas and scaling.")

    @field_validator("cpu", "memory", "shm_size")
    @classmethod
    def _quantities(cls, v: str) -> str:
        return _quantity(v)

    @model_validator(mode="after")
    def _parallel_fits(self) -> EngineDeployConfig:
        tp = self.tensor_parallel_size
        if tp is not None and self.gpus % tp:
            raise ValueError(f"tensor_parallel_size ({tp}) must divide gpus ({self.gpus})")
        if self.prestop_sleep_s < self.discovery_interval_s:
            raise ValueError(
                f"prestop_sleep_s ({self.prestop_sleep_s}) is shorter than discovery_interval_s "
                f"({self.discovery_interval_s}): gateways would still send to a stopping engine"
            )
        return self


class RedisMode(StrEnum):
    IN_CHART = "in_chart"  # a small Redis Deployment + Service rendered by the chart
    EXTERNAL = "external"  # a Redis the operator runs (url)
    NONE = "none"  # keep limits.store as configured (memory: limits multiply with gateway replicas)


class RedisDeployConfig(_Section):
    mode: RedisMode = Field(RedisMode.IN_CHART, description="in_chart | external | none.")
    url: str | None = Field(None, description="redis://host:port/db of an external Redis (mode external).")
    image: ImageRef = Field(
        default_factory=lambda: ImageRef.model_validate(DEFAULT_REDIS_IMAGE), description="Redis image (in_chart)."
    )

    @model_validator(mode="after")
    def _url(self) -> RedisDeployConfig:
        if self.mode is RedisMode.EXTERNAL and not (self.url or "").startswith(("redis://", "rediss://")):
            raise ValueError("mode external needs `url` (redis://host:port/db)")
        return self


class GatewayDeployConfig(_Section):
    image: ImageRef = Field(
        default_factory=lambda: ImageRef.model_validate(DEFAULT_GATEWAY_IMAGE), description="Gateway image."
    )
    replicas: int = Field(2, ge=2, le=100, description="Gateway replicas (at least 2: one can drain at a time).")
    port: int = Field(8080, ge=1, le=65535, description="Gateway port (container and Service).")
    cpu: str = Field("1", description="CPU request.")
    memory: str = Field("1Gi", description="Memory request and limit.")
    api_keys_secret: str | None = Field(
        None,
        description="Existing Secret whose keys become the gateway's environment: one per limits.keys[].key_env.",
    )
    service_type: str = Field("ClusterIP", pattern="^(ClusterIP|NodePort|LoadBalancer)$", description="Service type.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="nodeSelector of the gateway pods.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Tolerations of the gateway pods.")

    @field_validator("cpu", "memory")
    @classmethod
    def _quantities(cls, v: str) -> str:
        return _quantity(v)


class MonitoringConfig(_Section):
    service_monitors: bool = Field(True, description="ServiceMonitors for the gateway and engines (if the CRD exists).")
    dcgm_service_monitor: bool = Field(True, description="A ServiceMonitor for NVIDIA's DCGM exporter.")
    dcgm_namespace: str = Field("gpu-operator", description="Namespace of the DCGM exporter's Service.")
    dcgm_selector: dict[str, str] = Field(
        default_factory=lambda: {"app": "nvidia-dcgm-exporter"}, description="Labels of the DCGM exporter's Service."
    )
    prometheus_rule: bool = Field(True, description="The alert rules as a PrometheusRule (if the CRD exists).")
    dashboard: bool = Field(True, description="The Grafana dashboard as a ConfigMap (grafana_dashboard: '1').")
    labels: dict[str, str] = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"},
        description="Labels on ServiceMonitors and the PrometheusRule, to match the Prometheus' selectors.",
    )
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090", description="Prometheus that KEDA's triggers query."
    )
    adapter_namespace: str | None = Field(
        None, description="Namespace of prometheus-adapter, where its rules ConfigMap goes (default: the release's)."
    )


class DeployConfig(_Section):
    """`deploy:` in inferline.yaml. Read by `inferline deploy render`, ignored by `inferline serve`."""

    name: str = Field(
        "inferline",
        description="Prefix of every object's name (the chart's fullnameOverride), so names do not depend "
        "on the Helm release name.",
    )
    cluster_domain: str = Field("cluster.local", description="The cluster's DNS domain.")
    gateway: GatewayDeployConfig = Field(default_factory=GatewayDeployConfig, description="The gateway pods.")
    redis: RedisDeployConfig = Field(default_factory=RedisDeployConfig, description="The shared limit store.")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig, description="Prometheus and Grafana.")
    models: dict[str, EngineDeployConfig] = Field(
        default_factory=dict, description="Model name (as in `models:`) -> its vLLM engines."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"`name` {v!r} must be a DNS label of at most 40 characters (a-z, 0-9, '-')")
        return v
