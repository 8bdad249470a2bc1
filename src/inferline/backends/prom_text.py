"""A minimal Prometheus text-format reader: sums samples by metric name (engines' /metrics)."""

from __future__ import annotations


def sum_by_name(text: str, wanted: frozenset[str]) -> dict[str, float]:
    """Sum every sample of each wanted metric across label sets (e.g. several vLLM engines).

    Hand-written because prometheus_client's parser builds full objects for every family; we poll
    a few gauges twice a second from every engine and need none of that.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        end = brace if 0 <= brace < space or (brace >= 0 and space < 0) else space
        name = line[:end]
        if name not in wanted:
            continue
        value_part = line[line.rfind("}") + 1 :] if brace >= 0 else line[space:]
        fields = value_part.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + value
    return out


def info_labels(text: str, name: str) -> dict[str, str]:
    """The labels of the first sample of an info-style metric, e.g. vllm:cache_config_info{block_size="16",...}."""
    prefix = name + "{"
    for line in text.splitlines():
        if line.startswith(prefix):
            body = line[len(prefix) : line.rfind("}")]
            out: dict[str, str] = {}
            for part in body.split('",'):
                key, sep, value = part.partition('="')
                if sep:
                    out[key.strip().lstrip(",")] = value.rstrip('"')
            return out
    return {}
