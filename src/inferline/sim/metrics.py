"""vLLM's Prometheus metrics for one simulated engine, in its own CollectorRegistry.

Names, types and labels follow vLLM V1 (vllm/v1/metrics/loggers.py): labels `model_name` and `engine`,
`vllm:request_success_total` adds `finished_reason`. Label children are resolved once, here.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

__all__ = ["METRICS_CONTENT_TYPE", "EngineMetrics"]

METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# vLLM's bucket boundaries (seconds), so histogram_quantile over sim and real engines compares like for like.
_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort")


class EngineMetrics:
    """The metric children of one engine. Gauges are set at scrape time; the rest on events."""

    def __init__(
        self,
        model_name: str,
        engine: str = "0",
        kv_blocks: int = 0,
        block_size: int = 16,
        prefix_caching: bool = False,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        reg = self.registry
        # vLLM's info gauge of the cache config: gateways read the KV capacity from its labels.
        Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            ["block_size", "num_gpu_blocks", "enable_prefix_caching", "engine"],
            registry=reg,
        ).labels(str(block_size), str(kv_blocks), str(prefix_caching), engine).set(1)
        names = ["model_name", "engine"]
        values = (model_name, engine)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, names, registry=reg).labels(*values)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, names, registry=reg).labels(*values)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, names, registry=reg, buckets=buckets).labels(*values)

        self.kv_cache_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        # Not a vLLM metric: the simulator's ground truth, for checking the gateway's estimate against.
        self.kv_fragmentation = gauge(
            "inferline_sim_kv_cache_fragmentation_ratio",
            "SIMULATOR TRUTH: allocated-but-empty KV-cache space over KV capacity (0-1); docs/observability.md.",
        )
        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        # Prefix caching, in tokens (vLLM V1): prompt tokens looked up at admission, and those found cached.
        self.prefix_cache_queries = counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."
        )
        self.prefix_cache_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*names, "finished_reason"],
            registry=reg,
        )
        self.success = {reason: success.labels(*values, reason) for reason in FINISH_REASONS}
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", _TTFT_BUCKETS
        )
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            _LATENCY_BUCKETS,
        )
        self.queue_time = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            _LATENCY_BUCKETS,
        )

    def render(self, running: int, waiting: int, kv_usage_ratio: float, kv_fragmentation_ratio: float) -> bytes:
        """The text exposition, with the gauges set from the engine's state at this instant."""
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_cache_usage.set(kv_usage_ratio)
        self.kv_fragmentation.set(kv_fragmentation_ratio)
        return generate_latest(self.registry)
