"""Engine profiles: the numbers that make a simulated engine behave like a real one.

A profile is the whole performance model of one engine replica. One scheduler step (one forward
pass over the batch) takes

    step_s = step_base_s
           + decode_seq_s      * decoding sequences in the step
           + kv_token_s        * context tokens the step's sequences attend over
           + prefill_token_s   * prompt tokens computed in the step (chunked prefill)

and every request whose prompt is fully computed gets one new token at the end of the step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from inferline.sim.gpu import H100_80GB, GpuSpec

__all__ = ["CPU_SMOLLM2", "H100_LLAMA8B", "INSTANT", "PROFILES", "Profile", "get_profile"]

BLOCK_SIZE_TOKENS = 16  # vLLM's default KV block size (--block-size)


@dataclass(frozen=True, slots=True)
class Profile:
    """One engine's capacity (slots, KV cache, per-step token budget) and its step-time model."""

    name: str
    description: str
    max_model_len: int
    max_num_seqs: int
    kv_blocks: int
    max_num_batched_tokens: int
    step_base_s: float
    decode_seq_s: float
    kv_token_s: float
    prefill_token_s: float
    block_size: int = BLOCK_SIZE_TOKENS
    # The card it models, for the DCGM-exporter series; None for an engine on CPU (no GPU series at all).
    gpu: GpuSpec | None = None

    @property
    def kv_tokens(self) -> int:
        return self.kv_blocks * self.block_size

    def step_s(self, decode_seqs: int, kv_tokens: int, prefill_tokens: int) -> float:
        """Model time of one step. Zero for an empty step (nothing runs, nothing is charged)."""
        if decode_seqs == 0 and prefill_tokens == 0:
            return 0.0
        return (
            self.step_base_s
            + self.decode_seq_s * decode_seqs
            + self.kv_token_s * kv_tokens
            + self.prefill_token_s * prefill_tokens
        )

    def with_overrides(
        self,
        *,
        max_num_seqs: int | None = None,
        kv_blocks: int | None = None,
        max_model_len: int | None = None,
    ) -> Profile:
        """A copy with the capacity knobs the CLI exposes replaced (None keeps the profile's value)."""
        return replace(
            self,
            max_num_seqs=self.max_num_seqs if max_num_seqs is None else max_num_seqs,
            kv_blocks=self.kv_blocks if kv_blocks is None else kv_blocks,
            max_model_len=self.max_model_len if max_model_len is None else max_model_len,
        )


# Llama-3.1-8B-Instruct, bf16, one H100-80GB SXM, vLLM V1 defaults with --gpu-memory-utilization 0.9.
# Sources (ranges read from them, then one smooth formula fitted; not a quote of any single run):
#  - vLLM blog "vLLM v0.6.0: 2.7x Throughput Improvement and 5x Latency Reduction" (2024-09-05,
#    https://blog.vllm.ai/2024/09/05/perf-update.html): Llama-3-8B on 1xH100, ShareGPT, TPOT at 32 QPS.
#  - Lambda "vllm-benchmark" report (github.com/LambdaLabsML/vllm-benchmark, benchmark_v0.md): Llama 3.1 8B
#    on 1xH100-SXM, TPOT and throughput against concurrency.
#  - Microsoft Azure HPC blog "Performance of Llama 3.1 8B AI Inference using vLLM on ND-H100-v5"
#    (2025-08-26, techcommunity.microsoft.com ... /4448355): throughput and KV use at rising batch.
#  - KV capacity from the model config and vLLM's memory log: 32 layers x 8 KV heads x 128 dims x 2 (K,V)
#    x 2 bytes = 128 KiB per token; weights 14.99 GB (vllm-project/vllm#10517 log); 0.9 x 79.6 GiB - 15 GiB
#    - ~2 GiB activations ~= 55 GiB ~= 450k tokens ("GPU KV cache size: ~450,000 tokens").
# Fit: decode ~10 ms/step at batch 1 (memory-bound weight read plus scheduling), +0.045 ms per sequence,
# +0.04 us per context token read (KV bytes / HBM bandwidth): batch 256 at 500-1000 tokens of context
# gives 27-32 ms/step (~8-10k output tok/s). Prefill ~16k tok/s. max_num_seqs 256: the range the
# published curves cover (V1 defaults to 1024 on 80 GB cards; raise it with --max-num-seqs).
H100_LLAMA8B = Profile(
    name="h100-llama8b",
    description="Llama-3.1-8B bf16 on one H100-80GB (vLLM, gpu-memory-utilization 0.9)",
    max_model_len=131072,
    max_num_seqs=256,
    kv_blocks=28_000,  # 448k tokens
    max_num_batched_tokens=8192,
    step_base_s=10.0e-3,
    decode_seq_s=0.045e-3,
    kv_token_s=0.04e-6,
    prefill_token_s=1 / 16_000,
    gpu=H100_80GB,
)

# SmolLM2-135M-Instruct Q4_1 on the embedded llama.cpp engine (xllamacpp), 2 CPU cores, 8 slots x 2048 ctx.
# Measured here (docs/sim.md, REFERENCE.md section 3): ~110 tok/s one stream, ~190 tok/s total at 8 streams,
# prompt ~300 tok/s. Solving base + 1*seq = 1/110 s and base + 8*seq = 8/190 s gives base = 4.37 ms,
# seq = 4.72 ms: on a CPU the per-sequence cost dominates (compute-bound, unlike a GPU). llama.cpp splits
# the context across slots, so the KV cache is 8 x 2048 tokens and never needs preemption at 8 slots;
# it fills a batch with up to n_batch = 2048 prompt tokens per step.
# Prefill recalibrated by benchmarks/calibrate_sim.py (2026-11-28, engine on both cores, other processes
# 0.01 cores; results/calibrate_sim.md): TTFT p50 at one user 443 ms for 158-token prompts (446 ms in an
# earlier run) with TPOT 9.99 ms, so (0.443 - 0.010) / 158 = 2.74 ms per prompt token = ~365 tok/s; the
# old 300 tok/s made the simulated TTFT 28-42% too long. The same run confirmed decode within 12%
# (fit: base 4.67 ms + 5.28 ms/seq, i.e. 101 tok/s at 1 stream, 171 at 8).
_CPU_BASE_S = 1 / 110 - (8 / 190 - 1 / 110) / 7
_CPU_SEQ_S = (8 / 190 - 1 / 110) / 7
CPU_SMOLLM2 = Profile(
    name="cpu-smollm2",
    description="SmolLM2-135M Q4 on llama.cpp, 2 CPU cores, 8 slots x 2048 context",
    max_model_len=2048,
    max_num_seqs=8,
    kv_blocks=8 * 2048 // BLOCK_SIZE_TOKENS,
    max_num_batched_tokens=2048,
    step_base_s=_CPU_BASE_S,
    decode_seq_s=_CPU_SEQ_S,
    kv_token_s=0.0,
    prefill_token_s=1 / 365,
)

# Zero model time: every step is free, so tokens come as fast as the event loop can send them.
# Capacity is large enough that nothing queues unless the CLI shrinks it. Used to measure gateway overhead.
INSTANT = Profile(
    name="instant",
    description="zero model time (measures the gateway, not a model)",
    max_model_len=32768,
    max_num_seqs=1024,
    kv_blocks=1 << 20,
    max_num_batched_tokens=1 << 24,
    step_base_s=0.0,
    decode_seq_s=0.0,
    kv_token_s=0.0,
    prefill_token_s=0.0,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (H100_LLAMA8B, CPU_SMOLLM2, INSTANT)}


def get_profile(name: str) -> Profile:
    """The profile called NAME; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown sim profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
