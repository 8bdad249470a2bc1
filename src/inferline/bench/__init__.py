"""`inferline bench`: a load generator and benchmark for any OpenAI-compatible streaming endpoint.

from inferline.bench import BenchConfig, run_bench, summarize
result = await run_bench(BenchConfig(url="http://127.0.0.1:8080", rates=(4.0,), duration_s=30))
print(result.runs[0].summary["ttft_ms"]["p99"])
"""

from inferline.bench.config import BenchConfig, Endpoint, LengthDist, LengthSpec, Workload
from inferline.bench.metrics import SLO, parse_slo, summarize, timeseries
from inferline.bench.record import ErrorKind, RequestRecord
from inferline.bench.runner import BenchError, BenchResult, Progress, RunResult, run_bench

__all__ = [
    "SLO",
    "BenchConfig",
    "BenchError",
    "BenchResult",
    "Endpoint",
    "ErrorKind",
    "LengthDist",
    "LengthSpec",
    "Progress",
    "RequestRecord",
    "RunResult",
    "Workload",
    "parse_slo",
    "run_bench",
    "summarize",
    "timeseries",
]
