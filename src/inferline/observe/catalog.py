"""The metric names inferline's rules, dashboard and `inferline top` may use, and who exports each.

GATEWAY is the metrics contract of `inferline serve` (declared in inferline.metrics); ENGINE the vLLM
series a gateway reads and the simulator exports; SIM_TRUTH the simulator-only ground truth; DCGM the
NVIDIA DCGM exporter's GPU series (simulated engines serve them at /dcgm/metrics); KUBE the
kube-state-metrics replica series. A test checks that every query in the rules and the dashboard names
one of these, so a renamed metric cannot leave a panel or an alert silently empty.
"""

from __future__ import annotations

__all__ = ["DCGM", "ENGINE", "GATEWAY", "KUBE", "PROMETHEUS", "SIM_TRUTH", "sample_names"]

# name -> (type, labels)
GATEWAY: dict[str, tuple[str, tuple[str, ...]]] = {
    "inferline_requests_total": ("counter", ("model", "backend", "status", "outcome")),
    "inferline_time_to_first_token_seconds": ("histogram", ("model", "backend")),
    "inferline_inter_token_latency_seconds": ("histogram", ("model", "backend")),
    "inferline_e2e_request_latency_seconds": ("histogram", ("model", "backend")),
    "inferline_queue_time_seconds": ("histogram", ("model",)),
    "inferline_queue_depth": ("gauge", ("model",)),
    "inferline_requests_in_flight": ("gauge", ("model",)),
    "inferline_prompt_tokens_total": ("counter", ("model", "backend")),
    "inferline_generation_tokens_total": ("counter", ("model", "backend")),
    "inferline_backend_retries_total": ("counter", ("model", "backend")),
    "inferline_backend_ejections_total": ("counter", ("model", "backend")),
    "inferline_backend_kv_cache_usage_ratio": ("gauge", ("model", "backend")),
    "inferline_backend_kv_cache_fragmentation_ratio": ("gauge", ("model", "backend")),
    "inferline_backend_requests_running": ("gauge", ("model", "backend")),
    "inferline_backend_requests_waiting": ("gauge", ("model", "backend")),
    "inferline_backend_in_flight_requests": ("gauge", ("model", "backend")),
    "inferline_backend_load_age_seconds": ("gauge", ("model", "backend")),
    "inferline_backend_healthy": ("gauge", ("model", "backend")),
    "inferline_backend_circuit_state": ("gauge", ("model", "backend")),
    "inferline_model_ready_backends": ("gauge", ("model",)),
    "inferline_prefix_affinity_decisions_total": ("counter", ("result",)),
    "inferline_cache_requests_total": ("counter", ("result",)),
    "inferline_limit_store_up": ("gauge", ("store",)),
    "inferline_limit_store_circuit_state": ("gauge", ("store",)),
    "inferline_limit_store_errors_total": ("counter", ("store",)),
}

ENGINE: dict[str, tuple[str, tuple[str, ...]]] = {
    "vllm:kv_cache_usage_perc": ("gauge", ("model_name", "engine")),
    "vllm:num_requests_running": ("gauge", ("model_name", "engine")),
    "vllm:num_requests_waiting": ("gauge", ("model_name", "engine")),
    "vllm:prompt_tokens_total": ("counter", ("model_name", "engine")),
    "vllm:generation_tokens_total": ("counter", ("model_name", "engine")),
    "vllm:num_preemptions_total": ("counter", ("model_name", "engine")),
    "vllm:prefix_cache_queries_total": ("counter", ("model_name", "engine")),
    "vllm:prefix_cache_hits_total": ("counter", ("model_name", "engine")),
    "vllm:request_success_total": ("counter", ("model_name", "engine", "finished_reason")),
    "vllm:time_to_first_token_seconds": ("histogram", ("model_name", "engine")),
    "vllm:e2e_request_latency_seconds": ("histogram", ("model_name", "engine")),
    "vllm:request_queue_time_seconds": ("histogram", ("model_name", "engine")),
}

SIM_TRUTH: dict[str, tuple[str, tuple[str, ...]]] = {
    "inferline_sim_kv_cache_fragmentation_ratio": ("gauge", ("model_name", "engine")),
}

_GPU = ("gpu", "UUID", "device", "modelName", "Hostname")
DCGM: dict[str, tuple[str, tuple[str, ...]]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", _GPU),
    "DCGM_FI_DEV_FB_USED": ("gauge", _GPU),
    "DCGM_FI_DEV_FB_FREE": ("gauge", _GPU),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("gauge", _GPU),
}

KUBE: dict[str, tuple[str, tuple[str, ...]]] = {
    "kube_deployment_spec_replicas": ("gauge", ("namespace", "deployment")),
    "kube_deployment_status_replicas_available": ("gauge", ("namespace", "deployment")),
}

# Prometheus' own per-target series.
PROMETHEUS: dict[str, tuple[str, tuple[str, ...]]] = {"up": ("gauge", ("job", "instance"))}


def sample_names(*families: dict[str, tuple[str, tuple[str, ...]]]) -> set[str]:
    """Every series name FAMILIES produce (histograms as _bucket, _sum, _count); all catalogs by default."""
    out: set[str] = set()
    for fam in families or (GATEWAY, ENGINE, SIM_TRUTH, DCGM, KUBE, PROMETHEUS):
        for name, (kind, _) in fam.items():
            if kind == "histogram":
                out.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                out.add(name)
    return out
