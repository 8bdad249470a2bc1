"""Named autoscaling configurations (Helm `autoscaling:` values) for `--preset` and `--compare`.

Kept free of imports so the CLI can list them without loading the simulator.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "PRESET_HELP"]

# Named configurations for --compare; "{seqs*0.75}" is 75% of the engine profile's max_num_seqs.
PRESETS: dict[str, dict[str, Any]] = {
    "seed": {  # the seed note: scale up at 75% GPU utilization, down at 30% after 300 s
        "minReplicas": 2,
        "maxReplicas": 10,
        "targetGPUUtilization": 75,
        "scaleDownUtilization": 30,
        "scaleDownStabilizationSeconds": 300,
    },
    "gpu": {"minReplicas": 2, "maxReplicas": 10, "targetGPUUtilization": 75},
    "queue": {"minReplicas": 2, "maxReplicas": 10, "targetQueueDepth": 5, "scaleDownStabilizationSeconds": 300},
    "kv": {"minReplicas": 2, "maxReplicas": 10, "targetKVCacheUsage": 0.3, "scaleDownStabilizationSeconds": 300},
    "running": {
        "minReplicas": 2,
        "maxReplicas": 10,
        "targetRunningRequests": "{seqs*0.75}",
        "scaleDownStabilizationSeconds": 300,
    },
    "running+queue": {
        "minReplicas": 2,
        "maxReplicas": 10,
        "targetRunningRequests": "{seqs*0.75}",
        "targetQueueDepth": 5,
        "scaleDownStabilizationSeconds": 300,
    },
    "running-low": {
        "minReplicas": 2,
        "maxReplicas": 10,
        "targetRunningRequests": "{seqs*0.375}",
        "scaleDownStabilizationSeconds": 300,
    },
    "keda-queue": {
        "engine": "keda",
        "minReplicas": 2,
        "maxReplicas": 10,
        "targetRunningRequests": "{seqs*0.75}",
        "targetQueueDepth": 5,
        "scaleDownStabilizationSeconds": 300,
        "keda": {"pollingInterval": 30, "cooldownPeriod": 300},
    },
}
PRESET_HELP = {
    "seed": "GPU util 75%, scale down below 30% after 300 s (the seed note)",
    "gpu": "GPU util 75% (plain HPA target)",
    "queue": "gateway queue depth 5 per replica",
    "kv": "engine KV-cache use 0.3",
    "running": "running requests per engine at 75% of max_num_seqs",
    "running+queue": "running requests (75% of slots) and gateway queue depth 5",
    "running-low": "running requests per engine at 37.5% of max_num_seqs (headroom for ramps)",
    "keda-queue": "running+queue through KEDA (30 s polling)",
}
