"""What the simulated cluster can be measured by: metric names (as an HPA or a PromQL query spells them) -> quantities.

Per pod (one series per engine pod):
    gpu_util   DCGM_FI_DEV_GPU_UTIL (aliases gpu_utilization, gpu_util): percent of the sample time in which the
               GPU ran a kernel. Simulated as the fraction of time the engine's step loop is busy (a step is
               executing) over the 1 s before the DCGM exporter's collection, which is exactly what makes it a
               poor load signal for LLM serving: one running sequence keeps it near 100%.
               The DCGM exporter reports the pod's GPU from container start, so a loading pod reports ~0.
    running    vllm:num_requests_running (vllm_num_requests_running)
    waiting    vllm:num_requests_waiting (vllm_num_requests_waiting): the ENGINE's own queue; behind inferline's
               gateway it stays near 0 (the gateway holds the queue)
    kv         vllm:kv_cache_usage_perc (vllm_kv_cache_usage_perc, vllm:gpu_cache_usage_perc), 0..1
               vLLM series exist once the server is up (= Ready), not while the model loads.
Gateway (one series):
    queue      inferline_queue_depth: requests waiting in the gateway for an engine with room
    in_flight  inferline_requests_in_flight: requests dispatched to engines and not finished
    rate       requests arriving per second: rate(inferline_requests_total[1m]) (in a KEDA query), or the
               adapter-exposed name inferline_request_rate. Unlike the queue it also counts requests the
               gateway turned away, so it can wake a fleet scaled to zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Aggregation", "Quantity", "QueryRef", "parse_query", "resolve_metric"]


class Quantity(StrEnum):
    GPU_UTIL = "gpu_util"
    RUNNING = "running"
    WAITING = "waiting"
    KV = "kv"
    QUEUE = "queue"
    IN_FLIGHT = "in_flight"
    RATE = "rate"

    @property
    def per_pod(self) -> bool:
        return self not in (Quantity.QUEUE, Quantity.IN_FLIGHT, Quantity.RATE)


_NAMES: dict[str, Quantity] = {
    "dcgm_fi_dev_gpu_util": Quantity.GPU_UTIL,
    "gpu_utilization": Quantity.GPU_UTIL,
    "gpu_util": Quantity.GPU_UTIL,
    "vllm:num_requests_running": Quantity.RUNNING,
    "vllm_num_requests_running": Quantity.RUNNING,
    "vllm:num_requests_waiting": Quantity.WAITING,
    "vllm_num_requests_waiting": Quantity.WAITING,
    "vllm:kv_cache_usage_perc": Quantity.KV,
    "vllm_kv_cache_usage_perc": Quantity.KV,
    "vllm:gpu_cache_usage_perc": Quantity.KV,
    "vllm_gpu_cache_usage_perc": Quantity.KV,
    "kv_cache_usage": Quantity.KV,
    "inferline_queue_depth": Quantity.QUEUE,
    "inferline_requests_in_flight": Quantity.IN_FLIGHT,
    "inferline_request_rate": Quantity.RATE,
}
RATE_WINDOW_S = 60.0  # inferline_request_rate = rate(inferline_requests_total[1m])
KNOWN_METRICS = sorted({"DCGM_FI_DEV_GPU_UTIL", *(k for k in _NAMES if not k.startswith("dcgm"))})


def resolve_metric(name: str) -> Quantity:
    """The simulated quantity behind metric NAME; ValueError naming the known ones otherwise."""
    q = _NAMES.get(name.lower())
    if q is None:
        raise ValueError(f"the simulator has no metric {name!r}; known: {', '.join(KNOWN_METRICS)}")
    return q


class Aggregation(StrEnum):
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    NONE = "none"  # a bare single-series (gateway) metric


@dataclass(frozen=True, slots=True)
class QueryRef:
    """A PromQL query reduced to what the simulator evaluates: AGG(QUANTITY), optionally averaged over a window."""

    quantity: Quantity
    aggregation: Aggregation
    window_s: float = 0.0


_AGG = re.compile(
    r"^\s*(?P<agg>sum|avg|max|min)\s*(?:by\s*\([^)]*\)\s*)?\(\s*(?P<inner>.*)\)\s*(?:by\s*\([^)]*\)\s*)?$", re.S
)
_OVER_TIME = re.compile(r"^\s*avg_over_time\s*\(\s*(?P<inner>.*)\[(?P<w>\d+)(?P<u>[smh])\]\s*\)\s*$", re.S)
_RATE = re.compile(
    r"^\s*(?:i?rate)\s*\(\s*inferline_requests_total\s*(?:\{[^}]*\})?\s*\[(?P<w>\d+)(?P<u>[smh])\]\s*\)\s*$", re.S
)
_METRIC = re.compile(r"^\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*$", re.S)
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_query(query: str) -> QueryRef:
    """A query the simulator can evaluate, e.g. `sum(inferline_queue_depth{model="x"})`,
    `avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL[1m]))` or `inferline_queue_depth`."""
    text = query.strip()
    agg = Aggregation.NONE
    m = _AGG.match(text)
    if m:
        agg, text = Aggregation(m.group("agg")), m.group("inner")
    window = 0.0
    r = _RATE.match(text)
    if r:
        return QueryRef(Quantity.RATE, agg, float(r.group("w")) * _UNIT_S[r.group("u")])
    w = _OVER_TIME.match(text)
    if w:
        window = float(w.group("w")) * _UNIT_S[w.group("u")]
        text = w.group("inner")
    name = _METRIC.match(text)
    if name is None:
        raise ValueError(
            f"query {query!r}: the simulator evaluates AGG(METRIC{{...}}) or AGG(avg_over_time(METRIC[W])) "
            "with AGG one of sum, avg, max, min"
        )
    q = resolve_metric(name.group("name"))
    if agg is Aggregation.NONE and q.per_pod:
        raise ValueError(f"query {query!r}: {name.group('name')} has one series per pod; aggregate it (sum/avg/max)")
    return QueryRef(q, agg, window)
