"""An engine profile fitted to an `inferline bench` result, so sizing rests on the user's own hardware.

What a bench JSON holds per run (summary): mean requests in flight, TTFT and TPOT distributions, prompt
and output tokens. The profile's step model (see inferline.sim.profiles) is fitted as
    TPOT p50  ~  step_base_s + decode_seq_s x mean in flight          (least squares over the runs)
    TTFT p50 at the lightest run  ~  step_base_s + prefill_token_s x mean prompt tokens
with kv_token_s = 0 (a bench cannot separate it from the per-sequence cost). What a bench cannot see is
given: max_num_seqs (the engine's --max-num-seqs), the KV cache in 16-token blocks, max_model_len and the
prefill chunk (max_num_batched_tokens). A sweep of at least two concurrencies (e.g. --concurrency 1,8,32)
is needed to separate the base step from the per-sequence cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

from inferline.sim.profiles import BLOCK_SIZE_TOKENS, Profile

__all__ = ["BenchProfileError", "profile_from_bench"]


class BenchProfileError(ValueError):
    """A bench result a profile cannot be fitted to."""


def profile_from_bench(
    path: Path,
    *,
    max_num_seqs: int = 256,
    kv_blocks: int | None = None,
    max_model_len: int = 8192,
    max_num_batched_tokens: int = 8192,
    name: str | None = None,
) -> tuple[Profile, list[str]]:
    """(profile, notes about the fit)."""
    try:
        data: Any = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise BenchProfileError(f"{path}: no such file") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BenchProfileError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("inferline.bench/"):
        raise BenchProfileError(f"{path}: not an inferline bench result (no schema inferline.bench/1)")
    points: list[tuple[float, float, float, float]] = []  # (in flight, tpot s, ttft s, prompt tokens)
    for run in data.get("runs", []):
        s = run.get("summary") or {}
        done = s.get("completed") or 0
        tpot = (s.get("tpot_ms") or {}).get("p50")
        ttft = (s.get("ttft_ms") or {}).get("p50")
        n = s.get("mean_in_flight")
        if not done or tpot is None or ttft is None or n is None:
            continue
        points.append((float(n), tpot / 1000.0, ttft / 1000.0, (s.get("input_tokens") or 0) / done))
    if not points:
        raise BenchProfileError(f"{path}: no run with completed requests and TTFT/TPOT to fit")
    notes: list[str] = []
    n = np.array([p[0] for p in points])
    tpot = np.array([p[1] for p in points])
    if len(set(np.round(n, 1))) >= 2:
        slope, base = np.polyfit(n, tpot, 1)
        if slope < 0:
            notes.append("TPOT fell as concurrency rose (a noisy bench?): per-sequence cost set to 0")
            slope, base = 0.0, float(tpot.mean())
    else:
        slope, base = 0.0, float(tpot[0])
        notes.append("one load level only: the per-sequence cost cannot be fitted (set to 0); bench 2+ concurrencies")
    base = max(float(base), 1e-4)
    lightest = min(points, key=lambda p: p[0])
    prompt = lightest[3]
    prefill = max(0.0, (lightest[2] - base) / prompt) if prompt > 0 else 0.0
    if prompt <= 0:
        notes.append("no prompt token counts in the bench: prefill cost set to 0")
    fitted = ", ".join(f"n={a:.1f}: TPOT {b * 1000:.1f} ms" for a, b, _, _ in points)
    notes.append(
        f"fit: step {base * 1000:.2f} ms + {slope * 1000:.3f} ms/sequence; prefill {prefill * 1e6:.1f} us/token "
        f"({1 / prefill if prefill else float('inf'):,.0f} tok/s) from {len(points)} runs ({fitted})"
    )
    blocks = kv_blocks if kv_blocks is not None else max_num_seqs * 2048 // BLOCK_SIZE_TOKENS
    if kv_blocks is None:
        notes.append(f"KV cache not measured: assumed {blocks} blocks (2048 tokens per slot); pass --kv-blocks")
    profile = Profile(
        name=name or (path.stem if path.stem.startswith("bench") else f"bench-{path.stem}"),
        description=f"fitted from {path.name} ({data.get('model', '?')})",
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        kv_blocks=blocks,
        max_num_batched_tokens=max_num_batched_tokens,
        step_base_s=base,
        decode_seq_s=float(slope),
        kv_token_s=0.0,
        prefill_token_s=prefill,
    )
    return profile, notes
