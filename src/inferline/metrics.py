"""Every inferline_* metric, declared once, in one registry per gateway.

Names follow Prometheus conventions (base units, `_total` counters, `_ratio` for 0-1). Per-engine series carry
`model` and `backend`; children are resolved once per model and per backend (labels() validates and locks on
every call), never per request or per chunk. docs/observability.md lists every series and what it means.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# 1 ms .. 30 s: resolves inter-token gaps at the low end and long generations at the top.
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, cpu, fds: what `inferline eval` reports
        mb = ["model", "backend"]
        # -- requests ------------------------------------------------------------------------------
        self.requests = Counter(
            "inferline_requests",
            "Requests finished, by model, backend (none when no engine saw it), HTTP status and outcome.",
            ["model", "backend", "status", "outcome"],
            registry=r,
        )
        self.in_flight = Gauge(
            "inferline_requests_in_flight", "Requests being processed by the gateway.", ["model"], registry=r
        )
        self.ttft = Histogram(
            "inferline_time_to_first_token_seconds",
            "Arrival at the gateway to the first content token sent to the client.",
            mb,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.itl = Histogram(
            "inferline_inter_token_latency_seconds",
            "Gap between consecutive content chunks relayed to the client.",
            mb,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.e2e = Histogram(
            "inferline_e2e_request_latency_seconds",
            "Arrival at the gateway to the end of the response (backend none: answered without an engine).",
            mb,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "inferline_prompt_tokens", "Prompt tokens processed (engine usage).", mb, registry=r
        )
        self.generation_tokens = Counter(
            "inferline_generation_tokens",
            "Generated tokens relayed (engine usage, else counted chunks); rate() is tokens per second.",
            mb,
            registry=r,
        )
        # -- the gateway's queue -------------------------------------------------------------------
        self.queue_depth = Gauge(
            "inferline_queue_depth", "Requests waiting in the gateway for an engine with room.", ["model"], registry=r
        )
        self.queue_time = Histogram(
            "inferline_queue_time_seconds",
            "Time a request waited in the gateway's queue before dispatch.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        # -- engines, as the gateway sees them ------------------------------------------------------
        self.backend_kv = Gauge(
            "inferline_backend_kv_cache_usage_ratio",
            "Engine KV-cache use (0-1) as last reported; NaN when unknown or stale.",
            mb,
            registry=r,
        )
        self.backend_fragmentation = Gauge(
            "inferline_backend_kv_cache_fragmentation_ratio",
            "Share of the engine's allocated KV cache holding no token (docs/observability.md); NaN when unknown.",
            mb,
            registry=r,
        )
        self.backend_running = Gauge(
            "inferline_backend_requests_running", "Requests running on the engine (its own count).", mb, registry=r
        )
        self.backend_waiting = Gauge(
            "inferline_backend_requests_waiting", "Requests waiting in the engine's own queue.", mb, registry=r
        )
        self.backend_in_flight = Gauge(
            "inferline_backend_in_flight_requests",
            "Requests this gateway has in flight on the backend.",
            mb,
            registry=r,
        )
        self.backend_load_age = Gauge(
            "inferline_backend_load_age_seconds", "Age of the last load reading from the engine.", mb, registry=r
        )
        self.backend_healthy = Gauge(
            "inferline_backend_healthy", "1 if the backend passes health checks and is not ejected.", mb, registry=r
        )
        self.backend_circuit = Gauge(
            "inferline_backend_circuit_state",
            "Circuit breaker per backend: 0 closed, 1 half-open (one trial request), 2 open (ejected).",
            mb,
            registry=r,
        )
        self.ejections = Counter(
            "inferline_backend_ejections", "Times a backend was ejected after consecutive failures.", mb, registry=r
        )
        self.retries = Counter(
            "inferline_backend_retries",
            "Requests retried on this backend after another failed before the first token.",
            mb,
            registry=r,
        )
        self.ready_backends = Gauge(
            "inferline_model_ready_backends", "Backends of the model ready to take requests.", ["model"], registry=r
        )
        # -- routing and the response cache -------------------------------------------------------
        self.affinity = Gauge(
            "inferline_prefix_affinity_entries", "Prompt prefixes remembered for affinity routing.", registry=r
        )
        self.affinity_decisions = Counter(
            "inferline_prefix_affinity_decisions",
            "Affinity routing decisions: hit (went to the prefix's engine), overloaded (it was too busy), new.",
            ["result"],
            registry=r,
        )
        self.canary_weight = Gauge(
            "inferline_canary_weight",
            "Share of the model's requests its canary candidate serves now (0 after a rollback).",
            ["model", "candidate"],
            registry=r,
        )
        self.canary_rolled_back = Gauge(
            "inferline_canary_rolled_back",
            "1 once the candidate was rolled back for being worse than the baseline.",
            ["model", "candidate"],
            registry=r,
        )
        self.canary_attempts = Counter(
            "inferline_canary_attempts",
            "Engine attempts of a canaried model's requests, by variant (baseline, candidate) and result.",
            ["model", "variant", "result"],
            registry=r,
        )
        self.cache_requests = Counter(
            "inferline_cache_requests",
            "Response-cache lookups: hit, miss, fallback (served as the last step of the fallback chain).",
            ["result"],
            registry=r,
        )

    def for_model(self, model: str) -> ModelMetrics:
        """Children resolved once: labels() validates and locks on every call, so never per chunk."""
        return ModelMetrics(
            in_flight=self.in_flight.labels(model),
            queue_depth=self.queue_depth.labels(model),
            queue_time=self.queue_time.labels(model),
            ready_backends=self.ready_backends.labels(model),
        )

    def for_backend(self, model: str, backend: str) -> BackendMetrics:
        """Every per-engine child of one backend, resolved once when the backend joins the pool."""
        labels = (model, backend)
        return BackendMetrics(
            ttft=self.ttft.labels(*labels),
            itl=self.itl.labels(*labels),
            e2e=self.e2e.labels(*labels),
            prompt_tokens=self.prompt_tokens.labels(*labels),
            generation_tokens=self.generation_tokens.labels(*labels),
            kv=self.backend_kv.labels(*labels),
            fragmentation=self.backend_fragmentation.labels(*labels),
            running=self.backend_running.labels(*labels),
            waiting=self.backend_waiting.labels(*labels),
            in_flight=self.backend_in_flight.labels(*labels),
            load_age=self.backend_load_age.labels(*labels),
            healthy=self.backend_healthy.labels(*labels),
            circuit=self.backend_circuit.labels(*labels),
            ejections=self.ejections.labels(*labels),
            retries=self.retries.labels(*labels),
        )

    def forget_backend(self, model: str, backend: str) -> None:
        """A backend left the pool (discovery): drop its series so dashboards do not show a ghost."""
        for metric in (
            self.ttft,
            self.itl,
            self.e2e,
            self.prompt_tokens,
            self.generation_tokens,
            self.backend_kv,
            self.backend_fragmentation,
            self.backend_running,
            self.backend_waiting,
            self.backend_in_flight,
            self.backend_load_age,
            self.backend_healthy,
            self.backend_circuit,
            self.ejections,
            self.retries,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(model, backend)


@dataclass(slots=True, frozen=True)
class ModelMetrics:
    in_flight: Gauge
    queue_depth: Gauge
    queue_time: Histogram
    ready_backends: Gauge


@dataclass(slots=True, frozen=True)
class BackendMetrics:
    ttft: Histogram
    itl: Histogram
    e2e: Histogram
    prompt_tokens: Counter
    generation_tokens: Counter
    kv: Gauge
    fragmentation: Gauge
    running: Gauge
    waiting: Gauge
    in_flight: Gauge
    load_age: Gauge
    healthy: Gauge
    circuit: Gauge
    ejections: Counter
    retries: Counter
