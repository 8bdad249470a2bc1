"""Every inferline_* metric, declared once, in one registry per gateway."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.requests = Counter(
            "inferline_requests",
            "Requests finished, by model, backend, HTTP status and outcome.",
            ["model", "backend", "status", "outcome"],
            registry=r,
        )
        self.ttft = Histogram(
            "inferline_time_to_first_token_seconds",
            "Arrival at the gateway to the first content token sent to the client.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.itl = Histogram(
            "inferline_inter_token_latency_seconds",
            "Gap between consecutive content chunks relayed to the client.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.e2e = Histogram(
            "inferline_e2e_request_latency_seconds",
            "Arrival at the gateway to the end of the response.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "inferline_prompt_tokens",
            "Prompt tokens processed (engine usage).",
            ["model", "backend"],
            registry=r,
        )
        self.generation_tokens = Counter(
            "inferline_generation_tokens",
            "Generated tokens relayed (engine usage, else counted chunks).",
            ["model", "backend"],
            registry=r,
        )
        self.in_flight = Gauge(
            "inferline_requests_in_flight", "Requests being processed by the gateway.", ["model"], registry=r
        )
        self.retries = Counter(
            "inferline_backend_retries",
            "Requests retried on another backend after a failure before the first token.",
            ["model", "backend"],
            registry=r,
        )
        self.backend_kv = Gauge(
            "inferline_backend_kv_cache_usage_ratio",
            "Engine KV-cache use (0-1) as last reported; NaN when unknown or stale.",
            ["backend"],
            registry=r,
        )
        self.backend_running = Gauge(
            "inferline_backend_requests_running", "Requests running on the engine.", ["backend"], registry=r
        )
        self.backend_waiting = Gauge(
            "inferline_backend_requests_waiting",
            "Requests waiting in the engine's queue.",
            ["backend"],
            registry=r,
        )
        self.backend_healthy = Gauge(
            "inferline_backend_healthy",
            "1 if the backend passes health checks and is not ejected.",
            ["backend"],
            registry=r,
        )
        self.backend_in_flight = Gauge(
            "inferline_backend_in_flight_requests",
            "Requests this gateway has in flight on the backend.",
            ["backend"],
            registry=r,
        )
        self.backend_load_age = Gauge(
            "inferline_backend_load_age_seconds",
            "Age of the last load reading from the engine.",
            ["backend"],
            registry=r,
        )
        self.ejections = Counter(
            "inferline_backend_ejections",
            "Times a backend was ejected after consecutive failures.",
            ["backend"],
            registry=r,
        )

        self.backend_circuit = Gauge(
            "inferline_backend_circuit_state",
            "Circuit breaker per backend: 0 closed, 1 half-open (one trial request), 2 open (ejected).",
            ["backend"],
            registry=r,
        )
        self.affinity = Gauge(
            "inferline_prefix_affinity_entries", "Prompt prefixes remembered for affinity routing.", registry=r
        )
        self.affinity_decisions = Counter(
            "inferline_prefix_affinity_decisions",
            "Affinity routing decisions: hit (went to the prefix's engine), overloaded (it was too busy), new.",
            ["result"],
            registry=r,
        )
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

    def for_model(self, model: str) -> ModelMetrics:
        """Children resolved once: labels() validates and locks on every call, so never per chunk."""
        return ModelMetrics(
            ttft=self.ttft.labels(model),
            itl=self.itl.labels(model),
            e2e=self.e2e.labels(model),
            in_flight=self.in_flight.labels(model),
        )


@dataclass(slots=True, frozen=True)
class ModelMetrics:
    ttft: Histogram
    itl: Histogram
    e2e: Histogram
    in_flight: Gauge
